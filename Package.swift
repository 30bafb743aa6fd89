// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "vecstore",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "VecStore", targets: ["VecStore"]),
        .executable(name: "vecstore", targets: ["vecstore"]),
        .executable(name: "vecstore-bench", targets: ["VecStoreBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // C shims: one system library each, resolved through pkg-config, installed from Debian.
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // LAPACK routines from the same Debian OpenBLAS (declared in the shim: Debian ships no lapacke.h with it).
        .systemLibrary(name: "CLAPACK", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // Snowball stemmers (libstemmer ships no pkg-config file; the modulemap links it by name).
        .systemLibrary(name: "CStemmer", providers: [.apt(["libstemmer-dev"])]),
        // Text analysis for keyword search: Unicode normalisation, tokenizing, stop words, stemming.
        .target(name: "VecStoreText", dependencies: ["CStemmer"]),
        // Safe, scoped Swift wrapper over LMDB: environments, transactions, databases, cursors.
        .target(name: "LMDB", dependencies: ["CLMDB"]),
        // Input readers (JSONL, fvecs/bvecs, npy, id sidecars) and the JSON value model.
        .target(name: "VecStoreIO"),
        // Float32 distance kernels in C with run-time dispatch to AVX-512F / AVX2+FMA / portable code.
        .target(name: "CDistance"),
        // Distance kernels, top-k selection and BLAS-backed batch scoring over raw float memory.
        .target(name: "VecStoreKernels", dependencies: ["CBLAS", "CLAPACK", "CDistance"]),
        // Quantized-vector kernels in C (PQ ADC, 4-bit fast scan, int8) with run-time AVX-512BW / AVX2 dispatch.
        .target(name: "CQuant"),
        // Vector quantization core: k-means, product quantization, 4-bit fast scan, int8 scalar quantization
        // and the IVF inverted-list block layout (Spec/IVF.md, Spec/PQ.md). No LMDB, no engine types.
        .target(name: "VecStoreQuant", dependencies: ["VecStoreKernels", "CQuant", "CDistance"]),
        // SVG drawing: scatter maps and line charts, self-contained files with no dependencies.
        .target(name: "VecStorePlot"),
        // Element-wise kernels of the text encoder (GELU, LayerNorm, softmax, pooling) and SHA-256, in C.
        .target(name: "CEmbed"),
        // Text embedding: safetensors reader, BERT WordPiece tokenizer, BERT encoder, pooling (all-MiniLM-L6-v2).
        .target(name: "VecStoreEmbed", dependencies: ["CEmbed", "CBLAS", "VecStoreKernels", "VecStoreIO"]),
        // The engine and public library: store, collections, documents, filters, search, compaction, verify.
        .target(name: "VecStore", dependencies: ["LMDB", "VecStoreKernels", "VecStoreIO", "VecStoreText", "VecStorePlot",
                                                "CDistance", "VecStoreEmbed", "VecStoreQuant", "CQuant"]),
        // The command-line interface: a thin layer over the library.
        .executableTarget(name: "vecstore", dependencies: [
            "VecStore", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Release-mode benchmark harness driven by Tools/bench.
        .executableTarget(name: "VecStoreBench", dependencies: [
            "VecStore", "VecStoreQuant", .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "VecStoreIOTests", dependencies: ["VecStoreIO", .product(name: "PropertyBased", package: "swift-property-based")]),
        .testTarget(name: "VecStoreTextTests", dependencies: ["VecStoreText"]),
        .testTarget(name: "VecStoreQuantTests", dependencies: ["VecStoreQuant", "VecStoreKernels", "CQuant"]),
        .testTarget(name: "VecStoreEmbedTests", dependencies: ["VecStoreEmbed", "VecStoreIO"]),
        .testTarget(name: "VecStoreTests", dependencies: [
            "VecStore", "LMDB", "VecStoreKernels", "vecstore",
            .product(name: "PropertyBased", package: "swift-property-based"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
