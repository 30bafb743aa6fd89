// Programs that embed VecStore see the record/JSON types and metrics without further imports.
@_exported import VecStoreIO
@_exported import VecStoreKernels
@_exported import VecStoreEmbed
