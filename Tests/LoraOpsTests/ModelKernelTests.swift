import Foundation
import LoraOps
import OpenCLRuntime
import Reference
import XCTest

final class EmbeddingKernelTests: XCTestCase {
    func testGatherAndScatterAddBothLayouts() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (n, vocab, c) in [(1, 1, 1), (17, 5, 3), (63, 129, 17), (200, 1000, 8)] {
            let ids = (0..<n).map { _ in Int32.random(in: 0..<Int32(vocab), using: &rng) }
            let table = rng.uniform(vocab * c)
            let bids = try DeviceBuffer(queue: ctx.queue, ids)
            // Row-major (V, C) table, and the transposed view of a (C, V) table.
            for transposed in [false, true] {
                let layout: TableLayout = transposed ? .transposed(rows: vocab) : .rows(cols: c)
                let out = try poisoned(ctx, n * c)
                try ctx.embeddingForward(out: out, ids: bids, table: try ctx.buffer(table), layout: layout, tokens: n, cols: c)
                let ref = (0..<n * c).map { i -> Double in
                    let (t, col) = (i / c, i % c), id = Int(ids[t])
                    return Double(table[transposed ? col * vocab + id : id * c + col])
                }
                assertClose(try out.read(), ref, "gather \(n)x\(vocab)x\(c) transposed=\(transposed)")
                // Scatter-add: dtable starts at `prior`; ids absent from the batch must keep it.
                let dout = rng.uniform(n * c), prior = rng.uniform(vocab * c)
                let dtable = try ctx.buffer(prior)
                try ctx.embeddingBackward(dtable: dtable, layout: layout, dout: try ctx.buffer(dout),
                                          groups: try TokenGroups(ctx, ids: ids), cols: c, beta: 1)
                var expect = prior.map(Double.init)
                for t in 0..<n { for col in 0..<c {
                    let id = Int(ids[t])
                    expect[transposed ? col * vocab + id : id * c + col] += Double(dout[t * c + col])
                } }
                assertClose(try dtable.read(), expect, "scatter-add \(n)x\(vocab)x\(c) transposed=\(transposed)")
                // Finite differences: d/dtable Σ gather(table) ⊙ dout is the scatter-add of dout.
                let fresh = try ctx.buffer(count: vocab * c)
                try fresh.fill(0)
                try ctx.embeddingBackward(dtable: fresh, layout: layout, dout: try ctx.buffer(dout),
                                          groups: try TokenGroups(ctx, ids: ids), cols: c, beta: 0)
                let doutD = toDouble(dout)
                assertGradient(try fresh.read(), at: toDouble(table), samples: 10, rng: &rng,
                               "embedding dtable FD \(n)x\(vocab)x\(c) transposed=\(transposed)") { tab in
                    (0..<n * c).reduce(0.0) { acc, i in
                        let (t, col) = (i / c, i % c), id = Int(ids[t])
                        return acc + tab[transposed ? col * vocab + id : id * c + col] * doutD[i]
                    }
                }
            }
        }
    }
}

final class RoPEKernelTests: XCTestCase {
    func tables(_ p: Int, _ d: Int, theta: Float = 10000) -> (cos: [Float], sin: [Float]) {
        var c = [Float](repeating: 0, count: p * d), s = c
        for pos in 0..<p { for i in 0..<(d / 2) {
            let a = Float(pos) / powf(theta, Float(2 * i) / Float(d))
            c[pos * d + i] = cosf(a); c[pos * d + i + d / 2] = cosf(a)
            s[pos * d + i] = sinf(a); s[pos * d + i + d / 2] = sinf(a)
        } }
        return (c, s)
    }

    func testForwardAndInverseAgainstFloat64AndFiniteDifferences() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (n, heads, d) in [(1, 1, 2), (3, 2, 6), (17, 3, 16), (129, 4, 64)] {
            let (cs, sn) = tables(n + 5, d)
            let positions = (0..<n).map { _ in Int.random(in: 0..<(n + 5), using: &rng) }
            let x = rng.uniform(n * heads * d)
            let bx = try ctx.buffer(x), bp = try DeviceBuffer(queue: ctx.queue, positions.map(Int32.init))
            let bc = try ctx.buffer(cs), bs = try ctx.buffer(sn)
            try ctx.rope(bx, positions: bp, cos: bc, sin: bs, tokens: n, heads: heads, headDim: d, inverse: false)
            let fwd = Reference.rope(toDouble(x), positions: positions, cos: cs, sin: sn, tokens: n, heads: heads, headDim: d)
            assertClose(try bx.read(), fwd, "rope \(n)x\(heads)x\(d)")
            // Backward is the inverse rotation: d/dx Σ rope(x)·R = rope⁻¹(R).
            let r = rng.uniform(n * heads * d)
            let br = try ctx.buffer(r)
            try ctx.rope(br, positions: bp, cos: bc, sin: bs, tokens: n, heads: heads, headDim: d, inverse: true)
            let grad = try br.read()
            let rD = toDouble(r)
            assertGradient(grad, at: toDouble(x), samples: 10, rng: &rng, "rope dx \(n)x\(heads)x\(d)") { xs in
                dot(Reference.rope(xs, positions: positions, cos: cs, sin: sn, tokens: n, heads: heads, headDim: d), rD)
            }
            // inverse ∘ forward = identity.
            try ctx.rope(bx, positions: bp, cos: bc, sin: bs, tokens: n, heads: heads, headDim: d, inverse: true)
            assertClose(try bx.read(), toDouble(x), "rope⁻¹∘rope \(n)x\(heads)x\(d)")
        }
    }

    /// Partial rotary (Phi-3's partial_rotary_factor): the first rotary_dim values of each head rotate by the
    /// (P, rotary_dim) tables, the rest pass through unchanged; backward is the inverse rotation.
    func testPartialRotaryAgainstFloat64AndFiniteDifferences() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (n, heads, d, r) in [(1, 1, 4, 2), (5, 3, 12, 8), (19, 2, 16, 12), (33, 4, 96, 72)] {
            let (cs, sn) = tables(n + 3, r)
            let positions = (0..<n).map { _ in Int.random(in: 0..<(n + 3), using: &rng) }
            let x = rng.uniform(n * heads * d)
            let bx = try ctx.buffer(x), bp = try DeviceBuffer(queue: ctx.queue, positions.map(Int32.init))
            let bc = try ctx.buffer(cs), bs = try ctx.buffer(sn)
            try ctx.rope(bx, positions: bp, cos: bc, sin: bs, tokens: n, heads: heads, headDim: d, rotaryDim: r, inverse: false)
            let fwd = Reference.rope(toDouble(x), positions: positions, cos: cs, sin: sn, tokens: n, heads: heads, headDim: d, rotaryDim: r)
            let got = try bx.read()
            assertClose(got, fwd, "rope \(n)x\(heads)x\(d) rotary \(r)")
            for t in 0..<n { for h in 0..<heads { for i in r..<d {
                XCTAssertEqual(got[(t * heads + h) * d + i], x[(t * heads + h) * d + i], "the pass-through part is untouched")
            } } }
            let rr = rng.uniform(n * heads * d)
            let br = try ctx.buffer(rr)
            try ctx.rope(br, positions: bp, cos: bc, sin: bs, tokens: n, heads: heads, headDim: d, rotaryDim: r, inverse: true)
            let rD = toDouble(rr)
            assertGradient(try br.read(), at: toDouble(x), samples: 10, rng: &rng, "partial rope dx \(n)x\(heads)x\(d)/\(r)") { xs in
                dot(Reference.rope(xs, positions: positions, cos: cs, sin: sn, tokens: n, heads: heads, headDim: d, rotaryDim: r), rD)
            }
        }
        let b = try ctx.buffer(count: 8), p = try DeviceBuffer(queue: ctx.queue, [Int32(0)])
        XCTAssertThrowsError(try ctx.rope(b, positions: p, cos: b, sin: b, tokens: 1, heads: 1, headDim: 8, rotaryDim: 10, inverse: false))
        XCTAssertThrowsError(try ctx.rope(b, positions: p, cos: b, sin: b, tokens: 1, heads: 1, headDim: 8, rotaryDim: 3, inverse: false))
    }
}

/// copy_columns: a column block of one matrix into another (a fused projection split, its gradient joined),
/// exactly, on awkward sizes; every destination value outside the block keeps its NaN poison.
final class CopyColumnsTests: XCTestCase {
    func testBlocksCopyExactlyAndNothingElseIsWritten() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (rows, srcStride, srcOff, dstStride, dstOff, width) in [(1, 1, 0, 1, 0, 1), (3, 7, 2, 5, 1, 4), (17, 96, 64, 32, 0, 32),
                                                                    (33, 48, 0, 80, 16, 48), (129, 130, 65, 65, 0, 65)] {
            let src = rng.uniform(rows * srcStride)
            let bs = try ctx.buffer(src)
            let bd = try ctx.buffer([Float](repeating: .nan, count: rows * dstStride))
            try ctx.copyColumns(from: bs, sourceStride: srcStride, sourceOffset: srcOff, to: bd, destinationStride: dstStride,
                                destinationOffset: dstOff, rows: rows, width: width)
            let got = try bd.read()
            for r in 0..<rows { for c in 0..<dstStride {
                let v = got[r * dstStride + c]
                if c >= dstOff && c < dstOff + width {
                    XCTAssertEqual(v, src[r * srcStride + srcOff + c - dstOff], "(\(r), \(c)) of \(rows)x\(width)")
                } else {
                    XCTAssertTrue(v.isNaN, "(\(r), \(c)) outside the block was written")
                }
            } }
        }
        // splitColumns and joinColumns (a fused projection's parts and their gradients): split, then joined back.
        let (rows, widths) = (7, [5, 3, 3])
        let fused = rng.uniform(rows * 11)
        let parts = try widths.map { try poisoned(ctx, rows * $0) }
        try ctx.splitColumns(try ctx.buffer(fused), rows: rows, into: Array(zip(parts, widths)))
        XCTAssertEqual(try parts[1].read(), (0..<rows).flatMap { r in fused[(r * 11 + 5)..<(r * 11 + 8)] })
        let joined = try poisoned(ctx, rows * 11)
        try ctx.joinColumns([(parts[0], 5)], rows: rows, into: joined, width: 11)
        try ctx.joinColumns(Array(zip(parts, widths).dropFirst()), rows: rows, into: joined, width: 11, offset: 5)
        XCTAssertEqual(try joined.read(), fused)
        let b = try ctx.buffer(count: 8)
        XCTAssertThrowsError(try ctx.copyColumns(from: b, sourceStride: 4, sourceOffset: 2, to: b, destinationStride: 4, rows: 2, width: 3))
        XCTAssertThrowsError(try ctx.copyColumns(from: b, sourceStride: 4, to: b, destinationStride: 4, rows: 3, width: 4))
    }
}

final class AttentionKernelTests: XCTestCase {
    static let shapes: [ComputeContext.AttentionShape] = [
        .init(batch: 1, seq: 1, heads: 1, kvHeads: 1, headDim: 2),
        .init(batch: 2, seq: 3, heads: 4, kvHeads: 2, headDim: 8),
        .init(batch: 1, seq: 17, heads: 6, kvHeads: 2, headDim: 16),
        .init(batch: 3, seq: 9, heads: 3, kvHeads: 3, headDim: 6),
        .init(batch: 1, seq: 65, heads: 2, kvHeads: 1, headDim: 64),
        .init(batch: 1, seq: 5, heads: 2, kvHeads: 1, headDim: 136),   // 8 register blocks + a tail of 8
        .init(batch: 2, seq: 3, heads: 1, kvHeads: 1, headDim: 256),   // every register block
    ]

    func testForwardBackwardAgainstFloat64AndFiniteDifferences() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for s in Self.shapes { try check(ctx, s, sequenceIDs: nil, rng: &rng) }
    }

    /// Packed rows: several samples per row (lengths drawn at random, many of
    /// them 1, some crossing 16-key blocks, a trailing padding sample with id −1
    /// in some rows); attention must never cross a sample boundary.
    func testPackedRowsAgainstFloat64AndFiniteDifferences() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        let cases: [(ComputeContext.AttentionShape, [[Int]]?)] = [
            (.init(batch: 2, seq: 40, heads: 4, kvHeads: 2, headDim: 16), [[1, 17, 5, 1, 16], [23, 1, 16]]),
            (.init(batch: 1, seq: 7, heads: 3, kvHeads: 1, headDim: 6), [[1, 1, 3, 2]]),
            (.init(batch: 1, seq: 5, heads: 2, kvHeads: 2, headDim: 8), [[1, 1, 1, 1, 1]]),   // each token alone: out = v
            (.init(batch: 1, seq: 70, heads: 2, kvHeads: 1, headDim: 64), [[40, 1, 29]]),    // whole key blocks skipped
            (.init(batch: 3, seq: 33, heads: 2, kvHeads: 2, headDim: 24), nil),              // random, D with a tail
            (.init(batch: 2, seq: 20, heads: 2, kvHeads: 1, headDim: 136), nil),
            (.init(batch: 2, seq: 50, heads: 4, kvHeads: 2, headDim: 16), nil),
        ]
        for (s, lengths) in cases {
            var ids: [Int] = []
            for b in 0..<s.batch {
                let row = lengths?[b] ?? Self.randomLengths(total: s.seq, rng: &rng)
                XCTAssertEqual(row.reduce(0, +), s.seq)
                // Odd rows end in a padding sample with its own id −1.
                let padded = b % 2 == 1 && row.count > 1
                for (n, len) in row.enumerated() {
                    ids += [Int](repeating: padded && n == row.count - 1 ? -1 : n, count: len)
                }
            }
            try check(ctx, s, sequenceIDs: ids, rng: &rng)
        }
    }

    /// A sliding window (keys further back than W are never attended) as window starts: windows of 1, shorter
    /// than a key block, longer than the sequence; with packed samples (the window counted within each);
    /// forward and backward against float64 and finite differences, NaN-poisoned outputs.
    func testSlidingWindowAgainstFloat64AndFiniteDifferences() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (s, window, lengths) in [(ComputeContext.AttentionShape(batch: 2, seq: 40, heads: 4, kvHeads: 2, headDim: 16), 5, [[1, 17, 5, 1, 16], [23, 1, 16]]),
                                     (.init(batch: 1, seq: 70, heads: 2, kvHeads: 1, headDim: 64), 17, nil),
                                     (.init(batch: 2, seq: 33, heads: 3, kvHeads: 1, headDim: 24), 2, nil),
                                     (.init(batch: 1, seq: 9, heads: 2, kvHeads: 2, headDim: 8), 50, nil),
                                     (.init(batch: 3, seq: 50, heads: 2, kvHeads: 2, headDim: 16), 16, nil),
                                     // Gemma 3's scale query_pre_attn_scalar^-½ (12 here), not 1/√D, with packed samples.
                                     (.init(batch: 2, seq: 40, heads: 4, kvHeads: 2, headDim: 16, scale: 1 / Float(12).squareRoot()), 5,
                                      [[1, 17, 5, 1, 16], [23, 1, 16]])] as [(ComputeContext.AttentionShape, Int, [[Int]]?)] {
            var ids: [Int]? = nil
            if let lengths {
                ids = lengths.flatMap { row in row.enumerated().flatMap { n, len in [Int](repeating: n, count: len) } }
            }
            try check(ctx, s, sequenceIDs: ids, rng: &rng, window: window)
        }
        // A window of 1: each token attends itself alone, so out = v (its gradients in q and k vanish: no
        // finite-difference check there).
        let one = ComputeContext.AttentionShape(batch: 2, seq: 21, heads: 2, kvHeads: 1, headDim: 8)
        let q = rng.uniform(2 * 21 * 16, -2, 2), k = rng.uniform(2 * 21 * 8, -2, 2), v = rng.uniform(2 * 21 * 8)
        let out = try poisoned(ctx, q.count), lse = try poisoned(ctx, 2 * 2 * 21)
        try ctx.attentionForward(out: out, lse: lse, q: try ctx.buffer(q), k: try ctx.buffer(k), v: try ctx.buffer(v), shape: one,
                                 segmentStarts: try DeviceBuffer(queue: ctx.queue, try one.windowStarts(nil, window: 1)))
        let o = try out.read()
        for t in 0..<42 { for h in 0..<2 { for d in 0..<8 { XCTAssertEqual(o[(t * 2 + h) * 8 + d], v[t * 8 + d], accuracy: 1e-6) } } }
        let s = ComputeContext.AttentionShape(batch: 1, seq: 6, heads: 1, kvHeads: 1, headDim: 2)
        XCTAssertEqual(try s.windowStarts([0, 0, 0, 3, 3, 3], window: 2), [0, 0, 1, 3, 3, 4])
        XCTAssertThrowsError(try s.windowStarts(nil, window: 0))
    }

    /// Every attention tile height `--kernel-config` accepts (aq, ak = 1…8, which
    /// holds every value the tuner may choose, and one mixed pair): forward and
    /// backward against float64 and finite differences on awkward T (1, 3, 17,
    /// 63, 129: multiples of no tile height or of 16), GQA ratios 1 and 3, a
    /// head dim with a tail, packed samples, NaN-poisoned outputs; and the
    /// tuner's own parity check passes on each.
    func testEveryTileHeightAgainstFloat64AndFiniteDifferences() throws {
        let device = try sharedContext().device
        let base = KernelConfig.deviceDefault(device)
        for quick in [false, true] {
            let rows = Tuner.searchSpace(for: device, quick: quick).attentionRows
            XCTAssertFalse(rows.isEmpty)
            XCTAssertTrue(rows.allSatisfy { (1...KernelConfig.maxAttentionRows).contains($0) }, "\(rows)")
        }
        for n in Tuner.searchSpace(for: device, quick: false).attentionRows {
            XCTAssertTrue(Tuner.parameterSets(for: device).contains { $0.attentionQueryRows == n }, "aq=\(n) untested by the tuning suite")
            XCTAssertTrue(Tuner.parameterSets(for: device).contains { $0.attentionKeyRows == n }, "ak=\(n) untested by the tuning suite")
        }
        var rng = freshRandom(#function)
        let heights = (1...KernelConfig.maxAttentionRows).map { ($0, $0) } + [(3, 5)]
        let cases: [(ComputeContext.AttentionShape, [Int]?)] = [
            (.init(batch: 1, seq: 1, heads: 3, kvHeads: 1, headDim: 8), nil),
            (.init(batch: 2, seq: 3, heads: 2, kvHeads: 2, headDim: 6), nil),
            (.init(batch: 1, seq: 17, heads: 3, kvHeads: 1, headDim: 16), nil),
            (.init(batch: 1, seq: 63, heads: 2, kvHeads: 2, headDim: 20), nil),
            (.init(batch: 1, seq: 129, heads: 3, kvHeads: 1, headDim: 16), nil),
            (.init(batch: 2, seq: 63, heads: 3, kvHeads: 1, headDim: 16), [1, 17, 5, 40]),
        ]
        for (aq, ak) in heights {
            var cfg = base
            cfg.attentionQueryRows = aq
            cfg.attentionKeyRows = ak
            let ctx = try ComputeContext(device: device, config: cfg, kernelFiles: ["attention.cl"])
            XCTAssertNil(try Tuner.attentionParityFailure(ctx), cfg.spec)
            for (s, lengths) in cases {
                let ids = lengths.map { l in (0..<s.batch).flatMap { _ in l.enumerated().flatMap { [Int](repeating: $0.offset, count: $0.element) } } }
                try check(ctx, s, sequenceIDs: ids, rng: &rng, samples: 4)
            }
        }
    }

    /// Sample lengths summing to `total`: a third of them 1, the rest up to 24.
    static func randomLengths(total: Int, rng: inout SeededRandom) -> [Int] {
        var out: [Int] = [], left = total
        while left > 0 {
            let len = Int.random(in: 0..<3, using: &rng) == 0 ? 1 : Int.random(in: 1...24, using: &rng)
            out.append(min(len, left))
            left -= out.last!
        }
        return out
    }

    func check(_ ctx: ComputeContext, _ s: ComputeContext.AttentionShape, sequenceIDs: [Int]?,
               rng: inout SeededRandom, samples: Int? = nil, window: Int? = nil) throws {
        let n = s.batch * s.seq, qn = n * s.heads * s.headDim, kn = n * s.kvHeads * s.headDim
        let q = rng.uniform(qn, -2, 2), k = rng.uniform(kn, -2, 2), v = rng.uniform(kn)
        let bq = try ctx.buffer(q), bk = try ctx.buffer(k), bv = try ctx.buffer(v)
        var starts = try sequenceIDs.map { try s.segmentStarts(sequenceIDs: $0) }
        if let window { starts = try s.windowStarts(starts, window: window) }
        let seg = try starts.map { try DeviceBuffer(queue: ctx.queue, $0) }
        let what = "\(ctx.config.spec) \(s)" + (sequenceIDs.map { " packed \($0)" } ?? "") + (window.map { " window \($0)" } ?? "")
        let out = try poisoned(ctx, qn), lse = try poisoned(ctx, s.batch * s.heads * s.seq)
        try ctx.attentionForward(out: out, lse: lse, q: bq, k: bk, v: bv, shape: s, segmentStarts: seg)
        func ref(_ q: [Double], _ k: [Double], _ v: [Double]) -> [Double] {
            Reference.attention(q: q, k: k, v: v, batch: s.batch, seq: s.seq, heads: s.heads, kvHeads: s.kvHeads,
                                headDim: s.headDim, sequenceIDs: sequenceIDs, window: window, scale: Double(s.scale))
        }
        let qD = toDouble(q), kD = toDouble(k), vD = toDouble(v)
        assertClose(try out.read(), ref(qD, kD, vD), "attention \(what)")
        XCTAssertFalse(try lse.read().contains { !$0.isFinite }, "lse \(what)")
        let dout = rng.uniform(qn)
        let dq = try poisoned(ctx, qn), dk = try poisoned(ctx, kn), dv = try poisoned(ctx, kn)
        let delta = try poisoned(ctx, s.batch * s.heads * s.seq)
        try ctx.attentionBackward(dq: dq, dk: dk, dv: dv, delta: delta, dout: try ctx.buffer(dout), out: out, lse: lse,
                                  q: bq, k: bk, v: bv, shape: s, segmentStarts: seg)
        let dD = toDouble(dout)
        let gq = try dq.read(), gk = try dk.read(), gv = try dv.read()
        for g in [gq, gk, gv] { XCTAssertFalse(g.contains { $0.isNaN }, "unwritten gradient \(what)") }
        let samples = samples ?? (sequenceIDs == nil ? 10 : 24)
        assertGradient(gq, at: qD, samples: samples, rng: &rng, "attention dq \(what)") { dot(ref($0, kD, vD), dD) }
        assertGradient(gk, at: kD, samples: samples, rng: &rng, "attention dk \(what)") { dot(ref(qD, $0, vD), dD) }
        assertGradient(gv, at: vD, samples: samples, rng: &rng, "attention dv \(what)") { dot(ref(qD, kD, $0), dD) }
    }

    /// The backward reads sample starts clamped to [0, t] as the forward does (issue 22): a start past
    /// its token gives the gradients of the clamped starts, not a silent mismatch with the forward.
    func testBackwardClampsSampleStartsAsTheForwardDoes() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        let s = ComputeContext.AttentionShape(batch: 1, seq: 37, heads: 2, kvHeads: 1, headDim: 8)
        let n = s.seq, qn = n * s.heads * s.headDim, kn = n * s.kvHeads * s.headDim
        var valid = try s.segmentStarts(sequenceIDs: (0..<n).map { $0 / 10 })
        valid[2] = 2  // token 2 starts a sample of its own (still non-decreasing)
        var invalid = valid
        invalid[2] = 9  // past its token: read as 2
        invalid[25] = 31
        valid[25] = 25
        XCTAssertEqual(valid, zip(invalid, 0...).map { min(max($0, 0), Int32($1)) })
        let q = try ctx.buffer(rng.uniform(qn, -2, 2)), k = try ctx.buffer(rng.uniform(kn, -2, 2)), v = try ctx.buffer(rng.uniform(kn))
        let dout = try ctx.buffer(rng.uniform(qn))
        func grads(_ starts: [Int32]) throws -> [[Float]] {
            let seg = try DeviceBuffer(queue: ctx.queue, starts)
            let out = try poisoned(ctx, qn), lse = try poisoned(ctx, s.heads * n)
            try ctx.attentionForward(out: out, lse: lse, q: q, k: k, v: v, shape: s, segmentStarts: seg)
            let dq = try poisoned(ctx, qn), dk = try poisoned(ctx, kn), dv = try poisoned(ctx, kn), delta = try poisoned(ctx, s.heads * n)
            try ctx.attentionBackward(dq: dq, dk: dk, dv: dv, delta: delta, dout: dout, out: out, lse: lse, q: q, k: k, v: v,
                                      shape: s, segmentStarts: seg)
            return [try out.read(), try dq.read(), try dk.read(), try dv.read()]
        }
        let want = try grads(valid), got = try grads(invalid)
        for (name, (a, b)) in zip(["out", "dq", "dk", "dv"], zip(got, want)) { XCTAssertEqual(a, b, name) }
    }

    func testSegmentStartsFromSequenceIDs() throws {
        let s = ComputeContext.AttentionShape(batch: 2, seq: 6, heads: 1, kvHeads: 1, headDim: 2)
        XCTAssertEqual(try s.segmentStarts(sequenceIDs: [0, 0, 1, 2, 2, 2, 5, -1, -1, 3, 3, 3]),
                       [0, 0, 2, 3, 3, 3, 0, 1, 1, 3, 3, 3])
        XCTAssertThrowsError(try s.segmentStarts(sequenceIDs: [0, 0, 1, 0, 2, 2, 0, 0, 0, 0, 0, 0])) {
            XCTAssertTrue("\($0)".contains("sequence id 0 of row 0 reappears at token 3"), "\($0)")
        }
        XCTAssertThrowsError(try s.segmentStarts(sequenceIDs: [0, 0]))
    }
}

final class CrossEntropyKernelTests: XCTestCase {
    func testFusedLossAndGradientAgainstFloat64AndFiniteDifferences() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (rows, vocab, chunk) in [(1, 1, 1), (3, 17, 2), (17, 129, 5), (40, 1000, 40)] {
            let logits = rng.uniform(rows * vocab, -6, 6)
            var targets = (0..<rows).map { _ in Int.random(in: 0..<vocab, using: &rng) }
            if rows > 2 { targets[1] = -100 }  // an ignored row
            let counted = targets.filter { $0 >= 0 }.count
            let bt = try DeviceBuffer(queue: ctx.queue, targets.map(Int32.init))
            let losses = try poisoned(ctx, rows)
            var grad = [Float]()
            // In chunks of rows, as the trainer runs it.
            var r0 = 0
            while r0 < rows {
                let r = min(chunk, rows - r0)
                let buf = try ctx.buffer(Array(logits[(r0 * vocab)..<((r0 + r) * vocab)]))
                try ctx.crossEntropy(logits: buf, losses: losses, targets: bt, rowOffset: r0, rows: r, vocab: vocab,
                                     countedTokens: counted)
                grad += try buf.read()
                r0 += r
            }
            let ref = Reference.crossEntropy(logits: toDouble(logits), targets: targets, vocab: vocab)
            let l = try losses.read()
            XCTAssertFalse(l.contains { $0.isNaN })
            let mean = l.reduce(0) { $0 + Double($1) } / Double(counted)
            XCTAssertEqual(mean, ref.loss, accuracy: 1e-5 * max(ref.loss, 1e-3), "loss \(rows)x\(vocab)")
            if rows > 2 { XCTAssertEqual(l[1], 0, "ignored row") }
            assertClose(grad, ref.grad, floor: 1e-3, "dlogits \(rows)x\(vocab)")
            assertGradient(grad, at: toDouble(logits), samples: 10, rng: &rng, "dlogits FD \(rows)x\(vocab)") {
                Reference.crossEntropy(logits: $0, targets: targets, vocab: vocab).loss
            }
            // The on-device sum of the losses.
            let scalars = try poisoned(ctx, 2)
            try ctx.sum(losses, count: rows, squares: false, into: scalars, slot: 1)
            XCTAssertEqual(Double(try scalars.read()[1]), ref.loss * Double(counted), accuracy: 1e-4 * max(ref.loss * Double(counted), 1))
        }
    }
}

final class RealTargetLossKernelTests: XCTestCase {
    /// MSE and BCE-with-logits on chunks of rows (as the classifier head runs
    /// them), against float64 and finite differences; outputs NaN-poisoned first.
    func testRegressionAndMultiLabelLossesAgainstFloat64AndFiniteDifferences() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for kind in [ComputeContext.RealTargetLoss.meanSquaredError, .binaryCrossEntropyWithLogits] {
            let bce = kind == .binaryCrossEntropyWithLogits
            for (rows, cols, chunk) in [(1, 1, 1), (3, 1, 2), (5, 4, 2), (33, 7, 33), (40, 3, 7)] {
                // Large logits too: BCE must stay finite where e^x overflows.
                var logits = rng.uniform(rows * cols, -8, 8)
                if rows * cols > 3 { logits[0] = 95; logits[1] = -95 }
                let targets = bce ? (0..<(rows * cols)).map { _ in Float(Int.random(in: 0...1, using: &rng)) }
                    : rng.uniform(rows * cols, -3, 3)
                let bt = try ctx.buffer(targets)
                let losses = try poisoned(ctx, rows)
                var grad = [Float]()
                var r0 = 0
                while r0 < rows {
                    let r = min(chunk, rows - r0)
                    let buf = try ctx.buffer(Array(logits[(r0 * cols)..<((r0 + r) * cols)]))
                    try ctx.realTargetLoss(kind, logits: buf, losses: losses, targets: bt, rowOffset: r0, rows: r,
                                           columns: cols, countedRows: rows)
                    grad += try buf.read()
                    r0 += r
                }
                let ref = Reference.realTargetLoss(logits: toDouble(logits), targets: toDouble(targets), bce: bce)
                let l = try losses.read()
                XCTAssertFalse(l.contains { !$0.isFinite }, "\(kind) \(rows)x\(cols)")
                let mean = l.reduce(0) { $0 + Double($1) } / Double(rows)
                XCTAssertEqual(mean, ref.loss, accuracy: 1e-5 * max(ref.loss, 1e-3), "\(kind) loss \(rows)x\(cols)")
                assertClose(grad, ref.grad, floor: 1e-4, "\(kind) dlogits \(rows)x\(cols)")
                assertGradient(grad, at: toDouble(logits), samples: 8, rng: &rng, "\(kind) FD \(rows)x\(cols)") {
                    Reference.realTargetLoss(logits: $0, targets: toDouble(targets), bce: bce).loss
                }
            }
        }
    }
}

extension RealTargetLossKernelTests {
    /// σ(x) − y where σ(x) nears y: a large positive logit with target 1 (and a large negative one
    /// with target 0) keeps its full relative precision (formed as −e^−x/(1 + e^−x), not σ(x) − 1).
    func testBinaryCrossEntropyGradientKeepsPrecisionInTheTails() throws {
        let ctx = try sharedContext()
        for (x, y) in [(Float(8.5), Float(1)), (12, 1), (15.9, 1), (-8.5, 0), (-12, 0), (3, 1), (-3, 0)] {
            let buf = try ctx.buffer([x]), losses = try poisoned(ctx, 1), t = try ctx.buffer([y])
            try ctx.realTargetLoss(.binaryCrossEntropyWithLogits, logits: buf, losses: losses, targets: t, rowOffset: 0, rows: 1,
                                   columns: 1, countedRows: 1)
            let ref = Reference.realTargetLoss(logits: [Double(x)], targets: [Double(y)], bce: true)
            let g = Double(try buf.read()[0])
            XCTAssertEqual(g, ref.grad[0], accuracy: 1e-6 * abs(ref.grad[0]), "dl/dx at x = \(x), y = \(y)")
            XCTAssertEqual(Double(try losses.read()[0]), ref.loss, accuracy: 1e-6 * max(ref.loss, 1e-30), "loss at x = \(x), y = \(y)")
        }
    }
}

final class OptimizerKernelTests: XCTestCase {
    func testAdamWWithClippingAndDecayMaskAgainstFloat64() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for n in [1, 3, 17, 1000, 4099] {
            let p0 = rng.uniform(n), decay = (0..<n).map { _ in Bool.random(using: &rng) }
            let bp = try ctx.buffer(p0), bm = try ctx.buffer(count: n), bv = try ctx.buffer(count: n)
            try bm.fill(0); try bv.fill(0)
            let mask = try DeviceBuffer(queue: ctx.queue, decay.map { UInt8($0 ? 1 : 0) })
            var p = toDouble(p0), m = [Double](repeating: 0, count: n), v = m
            let hyper = ComputeContext.AdamWHyper(lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1.0)
            for step in 1...4 {
                let g = rng.uniform(n, -3, 3)
                let bg = try ctx.buffer(g), sq = try poisoned(ctx, 2)
                try ctx.sum(bg, count: n, squares: true, into: sq, slot: 1)
                let normSq = toDouble(g).reduce(0) { $0 + $1 * $1 }
                XCTAssertEqual(Double(try sq.read()[1]), normSq, accuracy: 1e-5 * normSq)
                try ctx.adamw(params: bp, grads: bg, m: bm, v: bv, decayMask: mask, count: n, step: step, hyper: hyper,
                              gradSumSquares: sq, slot: 1)
                let clip = min(1, 1.0 / (normSq.squareRoot() + 1e-6))
                (p, m, v) = Reference.adamw(p: p, g: toDouble(g), m: m, v: v, step: step, lr: 1e-2, beta1: 0.9, beta2: 0.95,
                                            eps: 1e-8, wd: 0.1, clip: clip, decay: decay)
                assertClose(try bp.read(), p, "adamw params n=\(n) step \(step)")
                assertClose(try bm.read(), m, "adamw m n=\(n) step \(step)")
                assertClose(try bv.read(), v, "adamw v n=\(n) step \(step)")
            }
        }
    }
}

final class ConvertKernelTests: XCTestCase {
    func testHalfAndBFloat16ToFloat() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        var halves: [Float16] = [0, -0, 1, -2.5, .infinity, -.infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 65504, 6.1e-5]
        halves += (0..<1000).map { _ in Float16(Float.random(in: -100...100, using: &rng)) }
        let hb = try DeviceBuffer(queue: ctx.queue, halves.map(\.bitPattern))
        let out = try poisoned(ctx, halves.count)
        try ctx.convertHalf(hb, to: out, count: halves.count, bfloat: false)
        XCTAssertEqual(try out.read(), halves.map(Float.init))
        let floats: [Float] = [0, -0, 1, -3.75, .infinity, 1e-38, 3e38] + rng.uniform(1000, -1e6, 1e6)
        let bf = floats.map { UInt16($0.bitPattern >> 16) }
        let bb = try DeviceBuffer(queue: ctx.queue, bf)
        let out2 = try poisoned(ctx, bf.count)
        try ctx.convertHalf(bb, to: out2, count: bf.count, bfloat: true)
        XCTAssertEqual(try out2.read(), bf.map { Float(bitPattern: UInt32($0) << 16) })
        // NaN stays NaN.
        let nanH = try DeviceBuffer(queue: ctx.queue, [Float16.nan.bitPattern])
        let o3 = try ctx.buffer(count: 1)
        try ctx.convertHalf(nanH, to: o3, count: 1, bfloat: false)
        XCTAssertTrue(try o3.read()[0].isNaN)
    }
}
