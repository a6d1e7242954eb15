import COpenCL
import Foundation

/// Every failing `cl*` call becomes one of these: the code, its name from
/// the Khronos headers, and the operation that returned it.
public struct CLError: Error, CustomStringConvertible, Equatable {
    public let code: Int32
    public let operation: String
    public var name: String { CLError.name(of: code) }

    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    public var description: String { "\(operation) failed: \(name) (\(code))" }

    public static func name(of code: Int32) -> String {
        names[code] ?? "CL_UNKNOWN_ERROR"
    }

    static let names: [Int32: String] = [
        0: "CL_SUCCESS", -1: "CL_DEVICE_NOT_FOUND", -2: "CL_DEVICE_NOT_AVAILABLE",
        -3: "CL_COMPILER_NOT_AVAILABLE", -4: "CL_MEM_OBJECT_ALLOCATION_FAILURE",
        -5: "CL_OUT_OF_RESOURCES", -6: "CL_OUT_OF_HOST_MEMORY",
        -7: "CL_PROFILING_INFO_NOT_AVAILABLE", -8: "CL_MEM_COPY_OVERLAP",
        -9: "CL_IMAGE_FORMAT_MISMATCH", -10: "CL_IMAGE_FORMAT_NOT_SUPPORTED",
        -11: "CL_BUILD_PROGRAM_FAILURE", -12: "CL_MAP_FAILURE",
        -13: "CL_MISALIGNED_SUB_BUFFER_OFFSET", -14: "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST",
        -15: "CL_COMPILE_PROGRAM_FAILURE", -16: "CL_LINKER_NOT_AVAILABLE",
        -17: "CL_LINK_PROGRAM_FAILURE", -18: "CL_DEVICE_PARTITION_FAILED",
        -19: "CL_KERNEL_ARG_INFO_NOT_AVAILABLE",
        -30: "CL_INVALID_VALUE", -31: "CL_INVALID_DEVICE_TYPE", -32: "CL_INVALID_PLATFORM",
        -33: "CL_INVALID_DEVICE", -34: "CL_INVALID_CONTEXT", -35: "CL_INVALID_QUEUE_PROPERTIES",
        -36: "CL_INVALID_COMMAND_QUEUE", -37: "CL_INVALID_HOST_PTR", -38: "CL_INVALID_MEM_OBJECT",
        -39: "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR", -40: "CL_INVALID_IMAGE_SIZE",
        -41: "CL_INVALID_SAMPLER", -42: "CL_INVALID_BINARY", -43: "CL_INVALID_BUILD_OPTIONS",
        -44: "CL_INVALID_PROGRAM", -45: "CL_INVALID_PROGRAM_EXECUTABLE",
        -46: "CL_INVALID_KERNEL_NAME", -47: "CL_INVALID_KERNEL_DEFINITION", -48: "CL_INVALID_KERNEL",
        -49: "CL_INVALID_ARG_INDEX", -50: "CL_INVALID_ARG_VALUE", -51: "CL_INVALID_ARG_SIZE",
        -52: "CL_INVALID_KERNEL_ARGS", -53: "CL_INVALID_WORK_DIMENSION",
        -54: "CL_INVALID_WORK_GROUP_SIZE", -55: "CL_INVALID_WORK_ITEM_SIZE",
        -56: "CL_INVALID_GLOBAL_OFFSET", -57: "CL_INVALID_EVENT_WAIT_LIST", -58: "CL_INVALID_EVENT",
        -59: "CL_INVALID_OPERATION", -60: "CL_INVALID_GL_OBJECT", -61: "CL_INVALID_BUFFER_SIZE",
        -62: "CL_INVALID_MIP_LEVEL", -63: "CL_INVALID_GLOBAL_WORK_SIZE", -64: "CL_INVALID_PROPERTY",
        -65: "CL_INVALID_IMAGE_DESCRIPTOR", -66: "CL_INVALID_COMPILER_OPTIONS",
        -67: "CL_INVALID_LINKER_OPTIONS", -68: "CL_INVALID_DEVICE_PARTITION_COUNT",
        -69: "CL_INVALID_PIPE_SIZE", -70: "CL_INVALID_DEVICE_QUEUE",
        -1001: "CL_PLATFORM_NOT_FOUND_KHR",
    ]
}

/// Errors of the host layer that are not a `cl*` return code.
public enum OpenCLRuntimeError: Error, CustomStringConvertible, Equatable {
    case noPlatforms
    case noDevice(String)
    case deviceSelectorNotFound(selector: String, available: [String])
    case buildFailed(device: String, options: String, log: String)
    case sizeMismatch(operation: String, expected: Int, actual: Int)
    /// A buffer past the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE (bytes nil: the size overflows or is negative).
    case bufferTooLarge(label: String, bytes: Int?, count: Int, limit: Int, device: String)

    public var description: String {
        switch self {
        case .noPlatforms:
            // ocl-icd reads the ICD list from OCL_ICD_VENDORS when it is set (a directory or one .icd file).
            let env = ProcessInfo.processInfo.environment["OCL_ICD_VENDORS"].map { "OCL_ICD_VENDORS=\($0)" } ?? "/etc/OpenCL/vendors"
            return "no OpenCL platform found (the ICD loader found no usable .icd in \(env)): install an ICD "
                + "(on Debian: pocl-opencl-icd for the CPU, or a GPU vendor's)"
        case .noDevice(let what):
            return "no OpenCL device: \(what)"
        case .deviceSelectorNotFound(let selector, let available):
            return "no OpenCL device matches '\(selector)'; available:\n"
                + available.map { "  " + $0 }.joined(separator: "\n")
        case .buildFailed(let device, let options, let log):
            return "OpenCL program build failed on \(device) with options '\(options)':\n\(log)"
        case .sizeMismatch(let operation, let expected, let actual):
            return "\(operation): expected \(expected) elements, got \(actual)"
        case .bufferTooLarge(let label, let bytes, let count, let limit, let device):
            let size = bytes.map { "\($0) bytes" } ?? "\(count) elements (not a valid size)"
            return "\(label): a buffer of \(size) exceeds the largest single allocation of \(device), "
                + "CL_DEVICE_MAX_MEM_ALLOC_SIZE = \(limit) bytes"
        }
    }
}

/// Turns a cl* status code into a thrown `CLError`.
@inline(__always)
func check(_ code: cl_int, _ operation: @autoclosure () -> String) throws {
    if code != CL_SUCCESS { throw CLError(code: code, operation: operation()) }
}
