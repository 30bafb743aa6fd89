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
        .target(name: "VecStoreKernels", dependencies: ["CBLAS", "CDistance"]),
        // Element-wise kernels of the text encoder (GELU, LayerNorm, softmax, pooling) and SHA-256, in C.
        .target(name: "CEmbed"),
        // Text embedding: safetensors reader, BERT WordPiece tokenizer, BERT encoder, pooling (all-MiniLM-L6-v2).
        .target(name: "VecStoreEmbed", dependencies: ["CEmbed", "CBLAS", "CDistance", "VecStoreKernels", "VecStoreIO"]),
        // The engine and public library: store, collections, documents, filters, search, compaction, verify.
        .target(name: "VecStore", dependencies: ["LMDB", "VecStoreKernels", "VecStoreIO", "VecStoreText", "CDistance",
                                                "VecStoreEmbed"]),
        // The command-line interface: a thin layer over the library.
        .executableTarget(name: "vecstore", dependencies: [
            "VecStore", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Release-mode benchmark harness driven by Tools/bench.
        .executableTarget(name: "VecStoreBench", dependencies: [
            "VecStore", .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "VecStoreIOTests", dependencies: ["VecStoreIO", .product(name: "PropertyBased", package: "swift-property-based")]),
        .testTarget(name: "VecStoreTextTests", dependencies: ["VecStoreText"]),
        .testTarget(name: "VecStoreEmbedTests", dependencies: ["VecStoreEmbed", "VecStoreIO"]),
        .testTarget(name: "VecStoreTests", dependencies: [
            "VecStore", "LMDB", "VecStoreKernels", "vecstore",
            .product(name: "PropertyBased", package: "swift-property-based"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
