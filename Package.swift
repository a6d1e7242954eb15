// swift-tools-version:6.0
import PackageDescription

// Layers, imports pointing down only:
//   COpenCL, CBLAS (C shims) → OpenCLRuntime → LoraOps (kernel launchers)
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
        .target(name: "Reference", dependencies: ["CBLAS"]),
        .target(
            name: "KernelBench",
            dependencies: ["LoraOps", "LoraModel", "Reference"],
            path: "Benchmarks/KernelBench"),
        .executableTarget(
            name: "LoraGPUCLI",
            dependencies: [
                "LoraOps", "LoraModel", "KernelBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "LoraOpsTests", dependencies: ["LoraOps", "Reference"]),
        .testTarget(
            name: "LoraModelTests",
            dependencies: ["LoraModel", "LoraOps", "Reference"],
            exclude: ["../Fixtures"]),
    ],
    swiftLanguageModes: [.v5]
)
