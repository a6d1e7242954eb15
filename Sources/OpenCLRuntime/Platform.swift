import COpenCL
import Foundation

/// An OpenCL platform (one installed ICD: pocl, NVIDIA, ROCm, Intel...).
public struct Platform: @unchecked Sendable {
    public let id: cl_platform_id
    public let index: Int

    public static func all() throws -> [Platform] {
        var count: cl_uint = 0
        let status = clGetPlatformIDs(0, nil, &count)
        // The ICD loader says CL_PLATFORM_NOT_FOUND_KHR when no ICD is installed.
        if status == -1001 || count == 0 { return [] }
        try check(status, "clGetPlatformIDs")
        var ids = [cl_platform_id?](repeating: nil, count: Int(count))
        try check(clGetPlatformIDs(count, &ids, nil), "clGetPlatformIDs")
        return ids.enumerated().compactMap { i, id in id.map { Platform(id: $0, index: i) } }
    }

    public var name: String { (try? infoString(CL_PLATFORM_NAME)) ?? "?" }
    public var vendor: String { (try? infoString(CL_PLATFORM_VENDOR)) ?? "?" }
    public var version: String { (try? infoString(CL_PLATFORM_VERSION)) ?? "?" }

    func infoString(_ param: Int32) throws -> String {
        var size = 0
        try check(clGetPlatformInfo(id, cl_platform_info(param), 0, nil, &size), "clGetPlatformInfo")
        var bytes = [CChar](repeating: 0, count: size + 1)
        try check(clGetPlatformInfo(id, cl_platform_info(param), size, &bytes, nil), "clGetPlatformInfo")
        return String(cString: bytes).trimmingCharacters(in: .whitespaces)
    }

    public func devices() throws -> [Device] {
        var count: cl_uint = 0
        let status = clGetDeviceIDs(id, cl_device_type(CL_DEVICE_TYPE_ALL), 0, nil, &count)
        if status == CL_DEVICE_NOT_FOUND || count == 0 { return [] }
        try check(status, "clGetDeviceIDs")
        var ids = [cl_device_id?](repeating: nil, count: Int(count))
        try check(clGetDeviceIDs(id, cl_device_type(CL_DEVICE_TYPE_ALL), count, &ids, nil), "clGetDeviceIDs")
        return ids.enumerated().compactMap { i, d in
            d.map { Device(id: $0, platform: self, index: i) }
        }
    }
}


/// One device of a platform, with the limits the host layer needs.
public struct Device: @unchecked Sendable {
    public let id: cl_device_id
    public let platform: Platform
    public let index: Int

    public enum Kind: String, Sendable { case gpu, cpu, accelerator, other }

    public var name: String { (try? infoString(CL_DEVICE_NAME)) ?? "?" }
    public var vendor: String { (try? infoString(CL_DEVICE_VENDOR)) ?? "?" }
    public var version: String { (try? infoString(CL_DEVICE_VERSION)) ?? "?" }
    public var driverVersion: String { (try? infoString(CL_DRIVER_VERSION)) ?? "?" }

    public var kind: Kind {
        let t: cl_device_type = (try? info(CL_DEVICE_TYPE)) ?? 0
        if t & cl_device_type(CL_DEVICE_TYPE_GPU) != 0 { return .gpu }
        if t & cl_device_type(CL_DEVICE_TYPE_CPU) != 0 { return .cpu }
        if t & cl_device_type(CL_DEVICE_TYPE_ACCELERATOR) != 0 { return .accelerator }
        return .other
    }
    public var computeUnits: Int { Int((try? info(CL_DEVICE_MAX_COMPUTE_UNITS) as cl_uint) ?? 0) }
    public var globalMemoryBytes: Int { Int((try? info(CL_DEVICE_GLOBAL_MEM_SIZE) as cl_ulong) ?? 0) }
    public var maxAllocationBytes: Int { Int(clamping: (try? info(CL_DEVICE_MAX_MEM_ALLOC_SIZE) as cl_ulong) ?? 0) }
    public var localMemoryBytes: Int { Int((try? info(CL_DEVICE_LOCAL_MEM_SIZE) as cl_ulong) ?? 0) }
    public var maxWorkGroupSize: Int { (try? info(CL_DEVICE_MAX_WORK_GROUP_SIZE) as Int) ?? 0 }
    /// CL_DEVICE_MEM_BASE_ADDR_ALIGN in bytes: sub-buffer offsets must be multiples of it.
    public var baseAddressAlignmentBytes: Int { Int((try? info(CL_DEVICE_MEM_BASE_ADDR_ALIGN) as cl_uint) ?? 1024) / 8 }
    public var maxClockMHz: Int { Int((try? info(CL_DEVICE_MAX_CLOCK_FREQUENCY) as cl_uint) ?? 0) }
    public var preferredFloatVectorWidth: Int {
        Int((try? info(CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT) as cl_uint) ?? 0)
    }

    /// A stable label, "P:D name", used by `lora-gpu devices` and selection.
    public var label: String { "\(platform.index):\(index) \(name) [\(kind.rawValue), \(platform.name)]" }

    func info<T>(_ param: Int32) throws -> T {
        let size = MemoryLayout<T>.size
        let raw = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: MemoryLayout<T>.alignment)
        defer { raw.deallocate() }
        try check(clGetDeviceInfo(id, cl_device_info(param), size, raw, nil), "clGetDeviceInfo")
        return raw.load(as: T.self)
    }

    func infoString(_ param: Int32) throws -> String {
        var size = 0
        try check(clGetDeviceInfo(id, cl_device_info(param), 0, nil, &size), "clGetDeviceInfo")
        var bytes = [CChar](repeating: 0, count: size + 1)
        try check(clGetDeviceInfo(id, cl_device_info(param), size, &bytes, nil), "clGetDeviceInfo")
        return String(cString: bytes).trimmingCharacters(in: .whitespaces)
    }
}

/// Device choice: `--device` or `LORA_GPU_DEVICE` ("P:D" indices, or a
/// case-insensitive substring of the name, or "gpu"/"cpu"); default the first
/// GPU, else the first CPU.
public enum DeviceSelection {
    public static let environmentVariable = "LORA_GPU_DEVICE"

    public static func allDevices() throws -> [Device] {
        try Platform.all().flatMap { try $0.devices() }
    }

    public static func select(_ selector: String?) throws -> Device {
        let devices = try allDevices()
        guard !devices.isEmpty else {
            if try Platform.all().isEmpty { throw OpenCLRuntimeError.noPlatforms }
            throw OpenCLRuntimeError.noDevice("the installed platforms report no devices")
        }
        guard let raw = selector?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else {
            return devices.first { $0.kind == .gpu } ?? devices.first { $0.kind == .cpu } ?? devices[0]
        }
        let sel = raw.lowercased()
        let parts = sel.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count == 2, let p = Int(parts[0]), let d = Int(parts[1]),
           let hit = devices.first(where: { $0.platform.index == p && $0.index == d }) {
            return hit
        }
        if sel == "gpu" || sel == "cpu" || sel == "accelerator",
           let hit = devices.first(where: { $0.kind.rawValue == sel }) {
            return hit
        }
        if let hit = devices.first(where: { $0.name.lowercased().contains(sel) }) { return hit }
        throw OpenCLRuntimeError.deviceSelectorNotFound(selector: raw, available: devices.map(\.label))
    }
}
