// swift-tools-version:6.0
import PackageDescription

// Layers, imports pointing down only:
//   LoraBase (Foundation only: the one JSON value and its reader/writer, the
//     ordered map, SplitMix64, atomic file writes, mapped files, escaping, the
//     GPT-2 byte alphabet, Python's float text) at the bottom of everything;
//   COpenCL, CBLAS (C shims) → OpenCLRuntime → LoraOps (kernel launchers, the
//     tuner and its device timer; Reference for the tuner's parity check)
//   → LoraModel (checkpoints, the model on the device)
//   → LoraText (tokenizer, Jinja chat templates, datasets; no OpenCL) and
//     LoraTrain (loop, schedules, checkpoints, merge, generate)
//   → KernelBench (Benchmarks/) → lora-gpu CLI.
// Reference: the float64 references (no BLAS), used by the tuner, tests and
// benchmarks; ReferenceBLAS adds OpenBLAS sgemm for tests and benchmarks only.
let testHooks: [SwiftSetting] = [.define("ENABLE_TEST_HOOKS", .when(configuration: .debug))]

let package = Package(
    name: "lora-gpu",
    products: [
        .executable(name: "lora-gpu", targets: ["LoraGPUCLI"]),
        .library(name: "LoraOps", targets: ["LoraOps"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenCL",
            path: "Sources/COpenCL",
            providers: [.apt(["ocl-icd-opencl-dev", "opencl-headers"])]),
        .systemLibrary(
            name: "CBLAS",
            path: "Sources/CBLAS",
            providers: [.apt(["libopenblas-dev"])]),
        .executableTarget(name: "EmbedKernels", path: "Sources/EmbedKernels"),
        .plugin(
            name: "KernelEmbedder",
            capability: .buildTool(),
            dependencies: ["EmbedKernels"],
            path: "Plugins/KernelEmbedder"),
        .plugin(
            name: "BuildInfo",
            capability: .buildTool(),
            dependencies: ["EmbedKernels"],
            path: "Plugins/BuildInfo"),
        .target(name: "LoraBase"),
        .target(name: "OpenCLRuntime", dependencies: ["COpenCL"]),
        .target(name: "Reference", dependencies: ["LoraBase"]),
        .target(name: "ReferenceBLAS", dependencies: ["Reference", "CBLAS"]),
        .target(
            name: "LoraOps", dependencies: ["LoraBase", "OpenCLRuntime", "Reference"], plugins: ["KernelEmbedder"]),
        // Test hooks (failure injection) exist in debug builds only, as swift-system's ENABLE_MOCKING.
        .target(name: "LoraModel", dependencies: ["LoraBase", "OpenCLRuntime", "LoraOps"], swiftSettings: testHooks),
        .target(name: "LoraText", dependencies: ["LoraBase"]),
        .target(
            name: "LoraTrain",
            dependencies: [
                "LoraBase", "OpenCLRuntime", "LoraOps", "LoraModel", "LoraText",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: testHooks),
        .target(
            name: "KernelBench",
            dependencies: ["LoraBase", "OpenCLRuntime", "LoraOps", "LoraModel", "Reference", "ReferenceBLAS"],
            path: "Benchmarks/KernelBench"),
        .executableTarget(
            name: "LoraGPUCLI",
            dependencies: [
                "LoraBase", "OpenCLRuntime", "LoraOps", "LoraModel", "LoraText", "LoraTrain", "KernelBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            // main.swift holds the @main type; with more than one file it must not be read as top-level code.
            swiftSettings: [.unsafeFlags(["-parse-as-library"])],
            plugins: ["BuildInfo"]),
        // What the test targets share: fixtures' path, temporary directories, the CLI runner.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "LoraBaseTests", dependencies: ["LoraBase", "TestSupport"]),
        .testTarget(
            name: "LoraOpsTests",
            dependencies: ["LoraBase", "OpenCLRuntime", "LoraOps", "Reference", "ReferenceBLAS", "TestSupport"]),
        .testTarget(
            name: "LoraModelTests",
            dependencies: ["LoraBase", "OpenCLRuntime", "LoraModel", "LoraOps", "Reference", "TestSupport"],
            exclude: ["../Fixtures"]),
        .testTarget(name: "LoraTextTests", dependencies: ["LoraBase", "LoraText", "TestSupport"]),
        .testTarget(
            name: "LoraTrainTests",
            dependencies: ["LoraBase", "OpenCLRuntime", "LoraTrain", "LoraModel", "LoraText", "LoraOps", "Reference",
                           "ReferenceBLAS", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
