import COpenCL
import Foundation

/// An OpenCL context on one device. Frees its handle exactly once.
public final class CLContext {
    public let handle: cl_context
    public let device: Device
    /// CL_DEVICE_MAX_MEM_ALLOC_SIZE, read once (0 if the device does not say).
    public let maxAllocationBytes: Int
    /// Bytes of the buffers created on this context and not yet released, and
    /// the most there were at once since the last `resetPeakBytes()`: what
    /// clCreateBuffer was asked for (sub-buffers are views and add nothing),
    /// whether or not the driver has backed it with memory yet (pocl does so lazily).
    private let accountLock = NSLock()
    private var live = 0, peak = 0

    public init(device: Device) throws {
        var status: cl_int = 0
        var dev: cl_device_id? = device.id
        guard let ctx = clCreateContext(nil, 1, &dev, nil, nil, &status) else {
            throw CLError(code: status == CL_SUCCESS ? CL_INVALID_CONTEXT : status, operation: "clCreateContext")
        }
        try check(status, "clCreateContext")
        handle = ctx
        self.device = device
        maxAllocationBytes = device.maxAllocationBytes
    }

    /// Bytes of this context's buffers alive now (see `live`).
    public var liveBytes: Int { accountLock.lock(); defer { accountLock.unlock() }; return live }
    /// The largest `liveBytes` since the context was made or `resetPeakBytes()`.
    public var peakBytes: Int { accountLock.lock(); defer { accountLock.unlock() }; return peak }
    /// Starts a new peak measurement from the bytes alive now.
    public func resetPeakBytes() { accountLock.lock(); peak = live; accountLock.unlock() }

    func account(_ delta: Int) {
        accountLock.lock()
        live += delta
        peak = max(peak, live)
        accountLock.unlock()
    }

    deinit { clReleaseContext(handle) }
}

/// An in-order command queue with profiling enabled.
public final class CommandQueue {
    public let handle: cl_command_queue
    public let context: CLContext

    public init(context: CLContext) throws {
        var status: cl_int = 0
        let props = cl_command_queue_properties(CL_QUEUE_PROFILING_ENABLE)
        guard let q = clCreateCommandQueue(context.handle, context.device.id, props, &status) else {
            throw CLError(code: status, operation: "clCreateCommandQueue")
        }
        try check(status, "clCreateCommandQueue")
        handle = q
        self.context = context
    }

    /// Blocks until every enqueued command has finished.
    public func finish() throws { try check(clFinish(handle), "clFinish") }

    deinit {
        clFinish(handle)
        clReleaseCommandQueue(handle)
    }
}

/// An event of one enqueued command, for waiting and profiling.
public final class Event {
    public let handle: cl_event

    init(handle: cl_event) { self.handle = handle }

    public func wait() throws {
        var e: cl_event? = handle
        try check(clWaitForEvents(1, &e), "clWaitForEvents")
    }

    /// Device time between the command's start and end, from event profiling.
    public func durationNanoseconds() throws -> UInt64 {
        try wait()
        return try profile(CL_PROFILING_COMMAND_END) - profile(CL_PROFILING_COMMAND_START)
    }

    private func profile(_ param: Int32) throws -> UInt64 {
        var value: cl_ulong = 0
        try check(clGetEventProfilingInfo(handle, cl_profiling_info(param), MemoryLayout<cl_ulong>.size, &value, nil),
                  "clGetEventProfilingInfo")
        return UInt64(value)
    }

    deinit { clReleaseEvent(handle) }
}

/// Anything a kernel can take as a `__global` pointer.
public protocol MemoryObject: AnyObject {
    var mem: cl_mem { get }
}

/// A typed device buffer of `count` elements. The single owner of its
/// `cl_mem`, released exactly once in `deinit`.
public final class DeviceBuffer<Element>: MemoryObject {
    public let mem: cl_mem
    public let count: Int
    public let queue: CommandQueue
    /// A sub-buffer keeps its parent alive.
    public let parent: AnyObject?
    /// A sub-buffer's root buffer (the one clCreateBuffer made) and its first
    /// element there: OpenCL makes sub-buffers of a root only, so a view of a
    /// view is made from the root at the summed offset.
    private let root: DeviceBuffer<Element>?
    private let origin: Int
    /// Bytes asked of clCreateBuffer (0 for a sub-buffer), counted in the context's `liveBytes`.
    let allocatedBytes: Int

    public var byteCount: Int { count * MemoryLayout<Element>.stride }

    /// An uninitialised buffer (count ≥ 1; OpenCL rejects empty buffers, so
    /// a zero count allocates one element that no kernel reads).
    /// `label` names what the buffer holds (a tensor, an activation) in errors.
    public init(queue: CommandQueue, count: Int, label: String? = nil) throws {
        let what = label ?? "a buffer"
        let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
        guard count >= 0, !overflow else {
            throw OpenCLRuntimeError.bufferTooLarge(label: what, bytes: nil, count: count, limit: queue.context.maxAllocationBytes,
                                                    device: queue.context.device.name)
        }
        let limit = queue.context.maxAllocationBytes
        if limit > 0 && bytes > limit {
            throw OpenCLRuntimeError.bufferTooLarge(label: what, bytes: bytes, count: count, limit: limit, device: queue.context.device.name)
        }
        var status: cl_int = 0
        let m = clCreateBuffer(queue.context.handle, cl_mem_flags(CL_MEM_READ_WRITE), bytes, nil, &status)
        guard let m, status == CL_SUCCESS else {
            if status == CL_INVALID_BUFFER_SIZE {
                throw OpenCLRuntimeError.bufferTooLarge(label: what, bytes: bytes, count: count, limit: limit, device: queue.context.device.name)
            }
            if let m { clReleaseMemObject(m) }
            throw CLError(code: status == CL_SUCCESS ? CL_MEM_OBJECT_ALLOCATION_FAILURE : status,
                          operation: "clCreateBuffer(\(bytes) bytes for \(what))")
        }
        mem = m
        self.count = count
        self.queue = queue
        parent = nil
        root = nil
        origin = 0
        allocatedBytes = bytes
        queue.context.account(bytes)
    }

    private init(sub: cl_mem, count: Int, queue: CommandQueue, root: DeviceBuffer<Element>, origin: Int) {
        mem = sub
        self.count = count
        self.queue = queue
        self.parent = root
        self.root = root
        self.origin = origin
        allocatedBytes = 0
    }

    /// A view of `count` elements starting at element `offset`. The byte offset
    /// in the root buffer (this one's, or the root's of a view) must be a
    /// multiple of the device's base address alignment (`Device.baseAddressAlignmentBytes`).
    public func subBuffer(offset: Int, count n: Int) throws -> DeviceBuffer<Element> {
        let s = MemoryLayout<Element>.stride
        guard offset >= 0, n >= 1, n <= count, offset <= count - n else {
            throw OpenCLRuntimeError.sizeMismatch(operation: "subBuffer(offset: \(offset))", expected: count, actual: offset &+ n)
        }
        let base = root ?? self, at = origin + offset
        var region = cl_buffer_region(origin: at * s, size: n * s)
        var status: cl_int = 0
        guard let m = clCreateSubBuffer(base.mem, cl_mem_flags(CL_MEM_READ_WRITE),
                                        cl_buffer_create_type(CL_BUFFER_CREATE_TYPE_REGION), &region, &status) else {
            throw CLError(code: status, operation: "clCreateSubBuffer(offset \(at * s) bytes)")
        }
        try check(status, "clCreateSubBuffer(offset \(at * s) bytes)")
        return DeviceBuffer(sub: m, count: n, queue: queue, root: base, origin: at)
    }

    /// Blocking write of raw bytes (exactly `byteCount` of them).
    public func write(raw: UnsafeRawBufferPointer) throws {
        guard raw.count == byteCount else {
            throw OpenCLRuntimeError.sizeMismatch(operation: "DeviceBuffer.write(raw:) bytes", expected: byteCount, actual: raw.count)
        }
        if count == 0 { return }
        try check(clEnqueueWriteBuffer(queue.handle, mem, cl_bool(CL_TRUE), 0, raw.count, raw.baseAddress, 0, nil, nil),
                  "clEnqueueWriteBuffer")
    }

    public convenience init(queue: CommandQueue, _ values: [Element]) throws {
        try self.init(queue: queue, count: values.count)
        try write(values)
    }

    /// Blocking write of all elements.
    public func write(_ values: [Element]) throws {
        guard values.count == count else {
            throw OpenCLRuntimeError.sizeMismatch(operation: "DeviceBuffer.write", expected: count, actual: values.count)
        }
        if count == 0 { return }
        try values.withUnsafeBytes { raw in
            try check(clEnqueueWriteBuffer(queue.handle, mem, cl_bool(CL_TRUE), 0, raw.count, raw.baseAddress, 0, nil, nil),
                      "clEnqueueWriteBuffer")
        }
    }

    /// Blocking read of all elements.
    public func read() throws -> [Element] {
        if count == 0 { return [] }
        return try [Element](unsafeUninitializedCapacity: count) { ptr, initialized in
            try check(clEnqueueReadBuffer(queue.handle, mem, cl_bool(CL_TRUE), 0, byteCount, ptr.baseAddress, 0, nil, nil),
                      "clEnqueueReadBuffer")
            initialized = count
        }
    }

    /// Blocking read of the `n` elements starting at element `offset`.
    public func read(count n: Int, offset: Int = 0) throws -> [Element] {
        guard n >= 0, offset >= 0, offset <= count - n else {
            throw OpenCLRuntimeError.sizeMismatch(operation: "DeviceBuffer.read(count: \(n), offset: \(offset))", expected: count,
                                                  actual: offset + n)
        }
        if n == 0 { return [] }
        let s = MemoryLayout<Element>.stride
        return try [Element](unsafeUninitializedCapacity: n) { ptr, initialized in
            try check(clEnqueueReadBuffer(queue.handle, mem, cl_bool(CL_TRUE), offset * s, n * s, ptr.baseAddress, 0, nil, nil),
                      "clEnqueueReadBuffer")
            initialized = n
        }
    }

    /// Fills every element with `value` on the device.
    public func fill(_ value: Element) throws {
        if count == 0 { return }
        var v = value
        try withUnsafeBytes(of: &v) { pattern in
            try check(clEnqueueFillBuffer(queue.handle, mem, pattern.baseAddress, pattern.count, 0, byteCount, 0, nil, nil),
                      "clEnqueueFillBuffer")
        }
    }

    /// Device-side copy of `count` elements from `source` (offsets in elements).
    public func copy(from source: DeviceBuffer<Element>, count n: Int? = nil, sourceOffset: Int = 0, offset: Int = 0) throws {
        let n = n ?? source.count
        if n == 0 { return }
        let s = MemoryLayout<Element>.stride
        try check(clEnqueueCopyBuffer(queue.handle, source.mem, mem, sourceOffset * s, offset * s, n * s, 0, nil, nil),
                  "clEnqueueCopyBuffer")
    }

    deinit {
        clReleaseMemObject(mem)
        if allocatedBytes > 0 { queue.context.account(-allocatedBytes) }
    }
}

/// A built program. Build failures throw with the device's full build log.
public final class Program {
    public let handle: cl_program
    public let options: String

    public init(context: CLContext, source: String, options: String) throws {
        var status: cl_int = 0
        let prog: cl_program? = source.withCString { cstr in
            var p: UnsafePointer<CChar>? = cstr
            var len = strlen(cstr)
            return clCreateProgramWithSource(context.handle, 1, &p, &len, &status)
        }
        guard let prog else { throw CLError(code: status, operation: "clCreateProgramWithSource") }
        try check(status, "clCreateProgramWithSource")
        handle = prog
        self.options = options
        var dev: cl_device_id? = context.device.id
        let built = clBuildProgram(prog, 1, &dev, options, nil, nil)
        if built == CL_BUILD_PROGRAM_FAILURE || built == CL_INVALID_BUILD_OPTIONS {
            throw OpenCLRuntimeError.buildFailed(device: context.device.name, options: options,
                                                 log: Program.buildLog(prog, context.device.id))
        }
        try check(built, "clBuildProgram")
    }

    static func buildLog(_ prog: cl_program, _ device: cl_device_id) -> String {
        var size = 0
        guard clGetProgramBuildInfo(prog, device, cl_program_build_info(CL_PROGRAM_BUILD_LOG), 0, nil, &size) == CL_SUCCESS
        else { return "(no build log)" }
        var bytes = [CChar](repeating: 0, count: size + 1)
        guard clGetProgramBuildInfo(prog, device, cl_program_build_info(CL_PROGRAM_BUILD_LOG), size, &bytes, nil) == CL_SUCCESS
        else { return "(no build log)" }
        return String(cString: bytes)
    }

    public func kernel(named name: String) throws -> Kernel { try Kernel(program: self, name: name) }

    deinit { clReleaseProgram(handle) }
}

/// One kernel argument, by kind.
public enum KernelArgument {
    case int(Int32)
    case uint(UInt32)
    case float(Float)
    case buffer(MemoryObject)
    case local(bytes: Int)
}

/// A kernel object. Not thread-safe: arguments are state on the handle.
public final class Kernel {
    public let handle: cl_kernel
    public let name: String
    let program: Program  // keeps the program alive

    init(program: Program, name: String) throws {
        var status: cl_int = 0
        guard let k = clCreateKernel(program.handle, name, &status) else {
            throw CLError(code: status, operation: "clCreateKernel(\(name))")
        }
        try check(status, "clCreateKernel(\(name))")
        handle = k
        self.name = name
        self.program = program
    }

    public func setArguments(_ args: [KernelArgument]) throws {
        for (i, arg) in args.enumerated() {
            let idx = cl_uint(i)
            let op = "clSetKernelArg(\(name), \(i))"
            switch arg {
            case .int(var v): try check(clSetKernelArg(handle, idx, 4, &v), op)
            case .uint(var v): try check(clSetKernelArg(handle, idx, 4, &v), op)
            case .float(var v): try check(clSetKernelArg(handle, idx, 4, &v), op)
            case .buffer(let b):
                var m: cl_mem? = b.mem
                try check(clSetKernelArg(handle, idx, MemoryLayout<cl_mem>.size, &m), op)
            case .local(let bytes): try check(clSetKernelArg(handle, idx, bytes, nil), op)
            }
        }
    }

    /// Enqueues with an explicit local size (pocl picks a few huge work-groups
    /// when it is left NULL). `global` is rounded up to a multiple of `local`.
    @discardableResult
    public func launch(on queue: CommandQueue, global: [Int], local: [Int], profile: Bool = false) throws -> Event? {
        precondition(global.count == local.count && (1...3).contains(global.count))
        var g = zip(global, local).map { max(($0 + $1 - 1) / $1, 1) * $1 }
        var l = local
        var event: cl_event? = nil
        let status = profile
            ? clEnqueueNDRangeKernel(queue.handle, handle, cl_uint(g.count), nil, &g, &l, 0, nil, &event)
            : clEnqueueNDRangeKernel(queue.handle, handle, cl_uint(g.count), nil, &g, &l, 0, nil, nil)
        try check(status, "clEnqueueNDRangeKernel(\(name), global \(g), local \(l))")
        return event.map(Event.init(handle:))
    }

    deinit { clReleaseKernel(handle) }
}
