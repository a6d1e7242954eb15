// swift-tools-version:6.0
import PackageDescription

// Layers, imports pointing down only:
//   COpenCL, CBLAS (C shims) → OpenCLRuntime → LoraOps (kernel launchers)
//   → LoraModel (checkpoints, the model on the device)
//   → LoraText (tokenizer, Jinja chat templates, datasets; no OpenCL) and
//     LoraTrain (loop, schedules, checkpoints, merge, generate)
//   → KernelBench (Benchmarks/) → lora-gpu CLI.
// Reference (float64 + OpenBLAS) is used by tests and benchmarks only.
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
        .target(name: "OpenCLRuntime", dependencies: ["COpenCL"]),
        .target(name: "LoraOps", dependencies: ["OpenCLRuntime"], plugins: ["KernelEmbedder"]),
        .target(name: "LoraModel", dependencies: ["LoraOps"]),
        .target(name: "LoraText"),
        .target(
            name: "LoraTrain",
            dependencies: ["LoraModel", "LoraOps", "LoraText", .product(name: "Yams", package: "Yams")]),
        .target(name: "Reference", dependencies: ["CBLAS"]),
        .target(
            name: "KernelBench",
            dependencies: ["LoraOps", "LoraModel", "Reference"],
            path: "Benchmarks/KernelBench"),
        .executableTarget(
            name: "LoraGPUCLI",
            dependencies: [
                "LoraOps", "LoraModel", "LoraText", "LoraTrain", "KernelBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            // main.swift holds the @main type; with more than one file it must not be read as top-level code.
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
        .testTarget(name: "LoraOpsTests", dependencies: ["LoraOps", "Reference"]),
        .testTarget(
            name: "LoraModelTests",
            dependencies: ["LoraModel", "LoraOps", "Reference"],
            exclude: ["../Fixtures"]),
        .testTarget(name: "LoraTextTests", dependencies: ["LoraText"]),
        .testTarget(
            name: "LoraTrainTests",
            dependencies: ["LoraTrain", "LoraModel", "LoraText", "LoraOps", "Reference"]),
    ],
    swiftLanguageModes: [.v5]
)
