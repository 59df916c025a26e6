"""Pictures of layers (matplotlib, Agg, PNG and SVG): matrices, receptive fields, coverage, filters.

Every picture function first *computes* its image as data (an RGBA or count array in a frozen
dataclass) and then draws exactly that with ``interpolation="nearest"``, so tests check the pixels.
Large layers are aggregated or cropped, and the title or caption says so.
"""
