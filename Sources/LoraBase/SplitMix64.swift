// SplitMix64 (Steele, Lea & Flood 2014): the one seeded generator of the project.
// Shuffles, adapter initialisation, sampling, the tuner's inputs and the tests'
// inputs all draw from it; `mix` is its finaliser, used alone for counter-based
// hashes (dropout seeds). Not for cryptography.

public struct SplitMix64: RandomNumberGenerator, Sendable {
    public static let golden: UInt64 = 0x9E37_79B9_7F4A_7C15

    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    /// The finaliser: z ^= z>>30; z *= C1; z ^= z>>27; z *= C2; z ^ z>>31.
    @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        state &+= Self.golden
        return Self.mix(state)
    }

    /// Uniform in [0, 1) with 53 bits.
    public mutating func unit() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    /// `count` uniforms in [-1, 1) from 53-bit units (the tuner's inputs).
    public mutating func signedUnits(_ count: Int) -> [Float] {
        (0..<count).map { _ in Float(unit() * 2 - 1) }
    }
}
