import OpenCLRuntime

// The gemm kernel variants and the choice between them. Both take the same
// arguments and compute the same product (see Kernels/matmul.cl and
// Kernels/matmul_tiled.cl); `ComputeContext.gemm` asks `gemmLaunch` which
// kernel to run and with which global and local sizes.

/// The gemm kernel family a config runs.
public enum GemmVariant: String, Sendable, CaseIterable {
    /// `gemm_packed`: a GEMM_MR × 16 register tile per work-item streaming one
    /// packed panel; no __local memory, no barriers (what pocl on a CPU wants).
    case packed
    /// `gemm_tiled`: a work-group stages TK-deep tiles of op(A) and of the
    /// panels in __local memory with coalesced loads; each work-item a small
    /// register block (what GPUs want).
    case tiled
}

/// The tile of `gemm_tiled`: a work-group computes tm × tn of C, tk deep per
/// staged step; each work-item wm × wn outputs. Spelled "tile=TMxTNxTK,wpt=WMxWN".
public struct GemmTile: Equatable, Sendable, CustomStringConvertible {
    public var tm: Int
    public var tn: Int
    public var tk: Int
    public var wm: Int
    public var wn: Int

    public init(tm: Int, tn: Int, tk: Int, wm: Int, wn: Int) {
        self.tm = tm
        self.tn = tn
        self.tk = tk
        self.wm = wm
        self.wn = wn
    }

    /// The largest accepted tile side and register block side.
    public static let maxSide = 256
    public static let maxPerItem = 8

    /// The work-group's shape (along N, along M): the kernel's reqd_work_group_size.
    public var localSize: (Int, Int) { (tn / wn, tm / wm) }
    public var workGroupSize: Int { localSize.0 * localSize.1 }
    /// __local bytes of the staged tiles: As [tk][tm + 1] and Bs [tk][tn (+16)] (matmul_tiled.cl).
    public var localMemoryBytes: Int { 4 * tk * ((tm + 1) + (tn + (tn % 32 == 0 ? 16 : 0))) }

    /// Why the kernel cannot be built with this tile, or nil.
    public var problem: String? {
        if tm < 1 || tn < 1 || tk < 1 || wm < 1 || wn < 1 { return "tile sizes must be ≥ 1" }
        if tm > Self.maxSide || tn > Self.maxSide || tk > Self.maxSide { return "tile sides must be ≤ \(Self.maxSide)" }
        if wm > Self.maxPerItem || wn > Self.maxPerItem { return "wpt sides must be ≤ \(Self.maxPerItem)" }
        if tn % 16 != 0 { return "tile N \(tn) must be a multiple of the 16-wide panel" }
        if tm % wm != 0 || tn % wn != 0 { return "tile \(tm)x\(tn) is not a multiple of wpt \(wm)x\(wn)" }
        return nil
    }

    /// "64x64x16/4x4".
    public var description: String { "\(tm)x\(tn)x\(tk)/\(wm)x\(wn)" }
}

/// Which gemm kernel runs, and the tiled kernel's tile. The tile is part of
/// every build (gemm_tiled is always compiled), so it also counts for `packed`.
public struct GemmChoice: Equatable, Sendable {
    public var variant: GemmVariant
    public var tile: GemmTile

    public init(variant: GemmVariant, tile: GemmTile) {
        self.variant = variant
        self.tile = tile
    }

    /// 256 work-items of 4 × 4 outputs, 16-deep steps: 9 KB of __local memory.
    public static let defaultTile = GemmTile(tm: 64, tn: 64, tk: 16, wm: 4, wn: 4)
    public static let packed = GemmChoice(variant: .packed, tile: defaultTile)
    public static let tiledDefault = GemmChoice(variant: .tiled, tile: defaultTile)

    static let buildOptionsTemplate = "-DTILED_TM={tm} -DTILED_TN={tn} -DTILED_TK={tk} -DTILED_WM={wm} -DTILED_WN={wn}"

    func fillBuildOptions(_ options: String) -> String {
        options.replacingOccurrences(of: "{tm}", with: "\(tile.tm)")
            .replacingOccurrences(of: "{tn}", with: "\(tile.tn)")
            .replacingOccurrences(of: "{tk}", with: "\(tile.tk)")
            .replacingOccurrences(of: "{wm}", with: "\(tile.wm)")
            .replacingOccurrences(of: "{wn}", with: "\(tile.wn)")
    }

    /// Whether the tiled kernel's work-group and __local tiles fit `device`
    /// (checked for every variant: the program always builds gemm_tiled).
    func fits(_ device: Device) -> Bool {
        let wg = device.maxWorkGroupSize, lm = device.localMemoryBytes
        return (wg <= 0 || tile.workGroupSize <= wg) && (lm <= 0 || tile.localMemoryBytes <= lm)
    }
}

extension ComputeContext {
    /// The gemm kernel this context's config runs for C (M,N), with its
    /// global and local sizes, for panels of `storage` (its kernel-name suffix names the
    /// kernel; every variant has the same argument list; `gemm_packed`'s rows per work-item
    /// are the format's own where the config tunes them per format).
    func gemmLaunch(m: Int, n: Int, storage: WeightStorage = .f32) -> (kernel: String, global: [Int], local: [Int]) {
        switch config.gemm.variant {
        case .packed:
            let mr = config.rowsPerItem(storage)
            let (l0, l1) = config.gemmLocal
            return ("gemm_packed" + storage.kernelSuffix, [(n + 15) / 16, (m + mr - 1) / mr], [l0, l1])
        case .tiled:
            let t = config.gemm.tile
            let (lx, ly) = t.localSize
            return ("gemm_tiled" + storage.kernelSuffix, [(n + t.tn - 1) / t.tn * lx, (m + t.tm - 1) / t.tm * ly], [lx, ly])
        }
    }

    /// The gemm kernel and its parameters in words, for `lora-gpu bench` and logs:
    /// "gemm_tiled (tile 64x64x16, 4x4 per work-item, local 16x16)".
    public var gemmKernelDescription: String {
        switch config.gemm.variant {
        case .packed:
            return "gemm_packed (\(config.gemmRowsPerItem)x16 per work-item, local \(config.gemmLocal.0)x\(config.gemmLocal.1)"
                + (config.gemmBand > 0 ? ", bands of \(config.gemmBand) row groups)" : ")")
        case .tiled:
            let t = config.gemm.tile
            return "gemm_tiled (tile \(t.tm)x\(t.tn)x\(t.tk), \(t.wm)x\(t.wn) per work-item, local \(t.localSize.0)x\(t.localSize.1))"
        }
    }
}
