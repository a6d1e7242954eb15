import Foundation
import TestSupport
import XCTest
@testable import LoraModel

/// Issue 8 (memory): once a tensor's bytes are copied out, the checkpoint's
/// mapped pages leave the process's resident memory (`releaseMappedPages`),
/// so a CPU device does not hold the weights twice; the bytes stay readable.
final class MappedPagesTests: XCTestCase {
    struct NoMapping: Error, CustomStringConvertible { var description: String { "no mapping in /proc/self/smaps holds the tensor" } }

    /// Resident KiB of the mapping that contains `address`, from /proc/self/smaps.
    static func residentKiB(containing address: UnsafeRawPointer) throws -> Int {
        // /proc files report size 0: read to the end rather than by the size.
        guard let handle = FileHandle(forReadingAtPath: "/proc/self/smaps") else { throw NoMapping() }
        defer { try? handle.close() }
        let smaps = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        let a = UInt(bitPattern: Int(bitPattern: address))
        var inside = false
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let range = fields.first, range.contains("-"), !range.hasSuffix(":") {
                let ends = range.split(separator: "-").compactMap { UInt($0, radix: 16) }
                inside = ends.count == 2 && ends[0] <= a && a < ends[1]
            } else if inside, fields.first == "Rss:", fields.count >= 2, let kib = Int(fields[1]) {
                return kib
            }
        }
        throw NoMapping()
    }

    func testReleasedTensorPagesLeaveResidentMemoryAndStayReadable() throws {
        let dir = URL(fileURLWithPath: try temporaryDirectory("mapped"))
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("w.safetensors").path
        let n = 1 << 20  // 4 MiB of fp32
        let values = (0..<n).map { Float($0 % 977) * 0.5 }
        try SafeTensorsWriter.write([(name: "w", shape: [n], values: values)], to: path)
        let file = try SafeTensorsFile(path: path)
        let info = try XCTUnwrap(file.tensors["w"])
        let bytes = file.bytes(info)
        var sum: Float = 0
        for i in stride(from: 0, to: n, by: 1024) { sum += bytes.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
        let before = try Self.residentKiB(containing: bytes.baseAddress!)
        XCTAssertGreaterThanOrEqual(before, 4000, "every page was touched")
        releaseMappedPages(bytes)
        let after = try Self.residentKiB(containing: bytes.baseAddress!)
        XCTAssertLessThanOrEqual(after, 8, "at most the header's and the last partial page stay resident: \(after) KiB")
        XCTAssertEqual(try file.floats("w").values, values, "the bytes read back after the release")
        XCTAssertGreaterThan(sum, 0)
    }
}
