import Foundation
@testable import LoraModel
import LoraOps
import Reference
import XCTest

/// Packed and padded batches must give exactly what the samples give run one
/// by one: the same summed loss over counted tokens and the same gradients of
/// that sum. Attention never crosses a sample boundary, positions restart per
/// sample, and the label shift never makes a sample's first token the target
/// of the previous sample's last one.
final class PackingTests: XCTestCase {
    /// A sample: its token ids and labels (−100 on a masked prompt).
    struct Sample {
        let ids: [Int]
        let labels: [Int]
    }

    /// Samples of the given lengths, ids in 3..<vocab; the first `prompt`
    /// labels of longer samples are −100.
    static func samples(_ lengths: [Int], vocab: Int, seed: UInt64) -> [Sample] {
        var rng = SeededRandom(seed: seed)
        return lengths.map { n in
            let ids = (0..<n).map { _ in Int.random(in: 3..<vocab, using: &rng) }
            let prompt = n > 4 ? 2 : 0
            return Sample(ids: ids, labels: ids.enumerated().map { $0.offset < prompt ? -100 : $0.element })
        }
    }

    /// One row holding `samples` back to back, then `pad` padding tokens
    /// (id 0, label −100, their own sequence id −1, positions 0…).
    static func packedRow(_ samples: [Sample], pad: Int)
        -> (ids: [Int], labels: [Int], positions: [Int], sequence: [Int]) {
        var r: (ids: [Int], labels: [Int], positions: [Int], sequence: [Int]) = ([], [], [], [])
        for (n, s) in samples.enumerated() {
            r.ids += s.ids; r.labels += s.labels
            r.positions += Array(0..<s.ids.count)
            r.sequence += [Int](repeating: n, count: s.ids.count)
        }
        r.ids += [Int](repeating: 0, count: pad); r.labels += [Int](repeating: -100, count: pad)
        r.positions += Array(0..<pad); r.sequence += [Int](repeating: -1, count: pad)
        return r
    }

    func model(_ name: String) throws -> LlamaLoRAModel {
        let m = try ReferenceCase(name).model()
        XCTAssertEqual(m.lora.loraDropout, 0, "\(name): the comparison needs a deterministic forward")
        return m
    }

    /// Summed loss over counted tokens and the gradients of that sum.
    func lossSumAndGradients(_ m: LlamaLoRAModel, _ b: TokenBatch) throws -> (Double, [String: [Double]]) {
        let mean = try m.computeGradients(b)
        let count = Double(b.countedTokens)
        return (Double(mean) * count, try m.gradientTensors().mapValues { $0.map { Double($0) * count } })
    }

    /// Σ over single-sample batches (each its own row of its own length).
    func unpackedSum(_ m: LlamaLoRAModel, _ samples: [Sample]) throws -> (Double, [String: [Double]]) {
        var loss = 0.0, grads: [String: [Double]] = [:]
        for s in samples {
            let b = try TokenBatch(inputIDs: [s.ids], labels: [s.labels])
            let (l, g) = try lossSumAndGradients(m, b)
            if s.ids.count == 1 { XCTAssertEqual(b.countedTokens, 0, "a 1-token sample has no target") }
            loss += l
            for (k, v) in g { grads[k] = grads[k].map { zip($0, v).map { $0 + $1 } } ?? v }
        }
        return (loss, grads)
    }

    func assertSame(_ a: (Double, [String: [Double]]), _ b: (Double, [String: [Double]]), _ what: String,
                    file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.0, b.0, accuracy: 1e-5 * abs(b.0), "\(what): summed loss", file: file, line: line)
        XCTAssertEqual(Set(a.1.keys), Set(b.1.keys), file: file, line: line)
        for (k, g) in b.1.sorted(by: { $0.key < $1.key }) {
            let e = relativeError(a.1[k]!.map { Float($0) }, g)
            if ProcessInfo.processInfo.environment["PARITY_VERBOSE"] != nil { print("PACK \(what) \(k) rel \(e)") }
            XCTAssertLessThanOrEqual(e, 1e-5, "\(what): gradient \(k) relative error \(e)", file: file, line: line)
        }
    }

    /// The sliding-window ones pack samples longer than their window (Mistral's 3; Gemma 3's 4 on its sliding layer,
    /// beside a full layer): each sample keeps its own window.
    static let fixtures = ["llama_gqa_untied", "llama_tied_rslora_regex", "mistral_embed_lm_head", "qwen2_bias_lora_only",
                           "mistral_sliding_window", "gemma3_sliding", "gemma3_softcap"]

    func testPackedRowsEqualTheSamplesRunAlone() throws {
        for name in Self.fixtures {
            let m = try model(name)
            let s = Self.samples([6, 1, 9, 12, 3, 17, 1], vocab: m.config.vocabSize, seed: 7)
            // Row 0: s0 ++ s1 ++ s2 ++ 4 padding; row 1: s3 ++ s4 ++ 5 padding; row 2: s5 ++ s6 ++ 2 padding.
            let rows = [Self.packedRow([s[0], s[1], s[2]], pad: 4), Self.packedRow([s[3], s[4]], pad: 5),
                        Self.packedRow([s[5], s[6]], pad: 2)]
            let packed = try TokenBatch(inputIDs: rows.map(\.ids), labels: rows.map(\.labels),
                                        positionIDs: rows.map(\.positions), sequenceIDs: rows.map(\.sequence))
            XCTAssertTrue(packed.isPacked)
            XCTAssertEqual(packed.longestSample, 17)
            let alone = try unpackedSum(m, s)
            assertSame(try lossSumAndGradients(m, packed), alone, "\(name) packed 3×20")
            // The same samples one per row of a batch (row b = sample b, then padding).
            let padded = s.map { Self.packedRow([$0], pad: 17 - $0.ids.count) }
            let perRow = try TokenBatch(inputIDs: padded.map(\.ids), labels: padded.map(\.labels),
                                        positionIDs: padded.map(\.positions), sequenceIDs: padded.map(\.sequence))
            assertSame(try lossSumAndGradients(m, perRow), alone, "\(name) one sample per padded row")
        }
    }

    /// A packed row may be longer than max_position_embeddings (64) when every
    /// sample's positions stay below it; samples cross the 16-key blocks.
    func testPackedRowLongerThanMaxPositions() throws {
        let m = try model("llama_gqa_untied")
        let s = Self.samples([30, 1, 25, 16, 1], vocab: m.config.vocabSize, seed: 11)
        let row = Self.packedRow(s, pad: 3)
        XCTAssertEqual(row.ids.count, 76)
        let packed = try TokenBatch(inputIDs: [row.ids], labels: [row.labels], positionIDs: [row.positions],
                                    sequenceIDs: [row.sequence])
        let alone = try unpackedSum(m, s)
        assertSame(try lossSumAndGradients(m, packed), alone, "76-token packed row")
        // Gradient checkpointing recomputes the layers with the same sample boundaries.
        m.gradientCheckpointing = true
        assertSame(try lossSumAndGradients(m, packed), alone, "76-token packed row, checkpointing")
        m.gradientCheckpointing = false
        // Without restarted positions the row runs past the RoPE table: a clear error.
        let plain = try TokenBatch(inputIDs: [row.ids], labels: [row.labels], sequenceIDs: [row.sequence])
        XCTAssertThrowsError(try m.loss(plain)) {
            XCTAssertTrue("\($0)".contains("position id 64 (row 0, token 64)"), "\($0)")
        }
    }

    /// The test above would notice attention crossing samples: the same row
    /// with the DataCollatorWithFlattening labels (−100 on each sample's first
    /// label, so the same counted targets) but no sequence ids gives another loss.
    func testWithoutSequenceIDsSamplesSeeEachOther() throws {
        let m = try model("llama_gqa_untied")
        let s = Self.samples([6, 9, 5], vocab: m.config.vocabSize, seed: 3)
        let row = Self.packedRow(s, pad: 0)
        var flatLabels = row.labels
        var at = 0
        for x in s { flatLabels[at] = -100; at += x.ids.count }
        let packed = try TokenBatch(inputIDs: [row.ids], labels: [row.labels], positionIDs: [row.positions],
                                    sequenceIDs: [row.sequence])
        let flat = try TokenBatch(inputIDs: [row.ids], labels: [flatLabels], positionIDs: [row.positions])
        XCTAssertFalse(flat.isPacked)
        XCTAssertEqual(flat.targets, packed.targets, "the −100 on first labels ignores the same cross-sample targets")
        let lp = try m.loss(packed), lf = try m.loss(flat)
        XCTAssertGreaterThan(abs(lp - lf), 1e-4 * abs(lp), "cross-sample attention must change the loss")
        let alone = try unpackedSum(m, s)
        XCTAssertEqual(Double(lp) * Double(packed.countedTokens), alone.0, accuracy: 1e-5 * alone.0)
    }

    /// Right-padded rows of different lengths (padding labelled −100, with its
    /// own sequence id and positions continuing) equal the unpadded rows; so
    /// does plain right padding without sequence ids (causal attention never
    /// reaches the padding). The second batch reuses the first one's plan.
    func testRightPaddedRowsEqualUnpaddedRows() throws {
        for name in ["llama_gqa_untied", "mistral_embed_lm_head"] {
            let m = try model(name)
            let s = Self.samples([7, 12, 3, 1], vocab: m.config.vocabSize, seed: 5)
            let T = 12
            let ids = s.map { $0.ids + [Int](repeating: 0, count: T - $0.ids.count) }
            let labels = s.map { $0.labels + [Int](repeating: -100, count: T - $0.ids.count) }
            let seqIDs = s.map { [Int](repeating: 0, count: $0.ids.count) + [Int](repeating: -1, count: T - $0.ids.count) }
            let alone = try unpackedSum(m, s)
            let withIDs = try TokenBatch(inputIDs: ids, labels: labels, sequenceIDs: seqIDs)
            XCTAssertTrue(withIDs.isPacked)
            assertSame(try lossSumAndGradients(m, withIDs), alone, "\(name) right-padded with sequence ids")
            let plain = try TokenBatch(inputIDs: ids, labels: labels)
            XCTAssertFalse(plain.isPacked)
            assertSame(try lossSumAndGradients(m, plain), alone, "\(name) right-padded, causal only")
        }
    }

    func testBatchShiftAndValidation() throws {
        // The shift stops at each sample's last token.
        let b = try TokenBatch(inputIDs: [[5, 6, 7, 8, 9, 10]], labels: [[5, 6, 7, 8, -100, -100]],
                               positionIDs: [[0, 1, 0, 1, 2, 0]], sequenceIDs: [[0, 0, 1, 1, 1, -1]])
        XCTAssertEqual(b.targets, [6, -100, 8, -100, -100, -100])
        XCTAssertEqual(b.segmentStarts, [0, 0, 2, 2, 2, 5])
        XCTAssertEqual(b.positionIDs, [0, 1, 0, 1, 2, 0])
        XCTAssertEqual(b.longestSample, 3)
        // Defaults: positions 0…T−1 per row, one sample per row.
        let d = try TokenBatch(inputIDs: [[1, 2, 3], [4, 5, 6]])
        XCTAssertEqual(d.positionIDs, [0, 1, 2, 0, 1, 2])
        XCTAssertEqual(d.targets, [2, 3, -100, 5, 6, -100])
        XCTAssertFalse(d.isPacked)
        func fails(_ body: @autoclosure () throws -> TokenBatch, _ part: String, line: UInt = #line) {
            XCTAssertThrowsError(try body(), line: line) { XCTAssertTrue("\($0)".contains(part), "'\($0)' should mention '\(part)'", line: line) }
        }
        fails(try TokenBatch(inputIDs: [[1, 2]], positionIDs: [[0]]), "position_ids must have the shape")
        fails(try TokenBatch(inputIDs: [[1, 2]], sequenceIDs: [[0, 0], [0, 0]]), "sequence_ids must have the shape")
        fails(try TokenBatch(inputIDs: [[1, 2]], positionIDs: [[0, -1]]), "position_ids[0][1] = -1 is out of range")
        fails(try TokenBatch(inputIDs: [[1, 1 << 40]]), "input_ids[0][1] = 1099511627776 is out of range")
        fails(try TokenBatch(inputIDs: [[1, 2]], labels: [[1, Int.min]]), "labels[0][1]")
        fails(try TokenBatch(inputIDs: [[1, 2]], positionIDs: [[0, 1 << 33]]), "out of range")
        fails(try TokenBatch(inputIDs: [[1, 2, 3, 4]], sequenceIDs: [[0, 1, 1, 0]]), "sequence id 0 of row 0 reappears at token 3")
        // Against the model: positions below max_position_embeddings.
        let m = try model("llama_gqa_untied")
        XCTAssertThrowsError(try m.loss(try TokenBatch(inputIDs: [[1, 2]], positionIDs: [[0, 64]]))) {
            XCTAssertTrue("\($0)".contains("position id 64 (row 0, token 1) is not below max_position_embeddings 64"), "\($0)")
        }
    }
}
