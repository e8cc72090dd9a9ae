"""loaxa: controller software for commune loudspeaker units."""

__version__ = "0.1.0"
