"""pyserial URL handlers of loaxa (found by pyserial as `<package>.protocol_<scheme>`).

- `replay://PATH[?interval=1.0&loop=1]`: a recorded NMEA stream played back as a serial
  port (see hw/serialurls/protocol_replay.py and docs/hardware.md).
"""
