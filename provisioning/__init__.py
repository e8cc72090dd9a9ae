"""Provisioning: the unit's config schema (and `loaxa provision`)."""

from provisioning.config import (
    DEVICE_MODEL_PATH,
    MASK,
    SCHEMA,
    SYSTEM_CONFIG,
    AmplifierConfig,
    AudioConfig,
    BrokerConfig,
    ClockConfig,
    Config,
    GpioConfig,
    GpsConfig,
    HardwareConfig,
    ModemConfig,
    TrustConfig,
    UnitConfig,
    config_warnings,
    demo_config,
    demo_unit_id,
    detect_hardware_mode,
    find_config,
    load_config,
    mask_secrets,
    parse_config,
    read_password,
    state_home,
)

__all__ = [
    "DEVICE_MODEL_PATH", "MASK", "SCHEMA", "SYSTEM_CONFIG",
    "AmplifierConfig", "AudioConfig", "BrokerConfig", "ClockConfig", "Config", "GpioConfig",
    "GpsConfig", "HardwareConfig", "ModemConfig", "TrustConfig", "UnitConfig",
    "config_warnings", "demo_config", "demo_unit_id", "detect_hardware_mode", "find_config", "load_config",
    "mask_secrets", "parse_config", "read_password", "state_home",
]
