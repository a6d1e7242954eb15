// A dictionary with String keys that keeps insertion order, as Python's dict
// does; the JSON objects and the Jinja interpreter's dicts are both this.
//
// Keys are compared by their Unicode scalars (UTF-8 bytes), not by Swift's
// canonical equivalence: a vocabulary may hold both "é" (U+00E9) and
// "e\u{301}", which a `[String: V]` would merge into one entry.

/// A String wrapper that hashes and compares by UTF-8 bytes.
public struct ExactKey: Hashable, Sendable {
    public let string: String
    public init(_ s: String) { string = s }
    public static func == (a: ExactKey, b: ExactKey) -> Bool { a.string.utf8.elementsEqual(b.string.utf8) }
    public func hash(into h: inout Hasher) {
        var s = string
        s.withUTF8 { h.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}

public struct OrderedMap<Value> {
    public private(set) var keys: [String] = []
    private var values_: [Value] = []
    private var index: [ExactKey: Int] = [:]

    public init() {}

    /// Later duplicates overwrite the value but keep the first position (like a Python dict).
    public init(_ pairs: [(String, Value)]) {
        reserveCapacity(pairs.count)
        for (k, v) in pairs { self[k] = v }
    }

    public mutating func reserveCapacity(_ n: Int) {
        keys.reserveCapacity(n)
        values_.reserveCapacity(n)
        index.reserveCapacity(n)
    }

    /// Setting an existing key keeps its position; setting nil removes the key.
    public subscript(key: String) -> Value? {
        get { index[ExactKey(key)].map { values_[$0] } }
        set {
            let k = ExactKey(key)
            if let newValue {
                if let i = index[k] { values_[i] = newValue } else {
                    index[k] = keys.count
                    keys.append(key)
                    values_.append(newValue)
                }
            } else if let i = index.removeValue(forKey: k) {
                keys.remove(at: i)
                values_.remove(at: i)
                for j in i..<keys.count { index[ExactKey(keys[j])] = j }
            }
        }
    }

    /// Inserts a key that is not present yet; returns false (and changes nothing) when it is.
    @discardableResult
    public mutating func insertNew(_ key: String, _ value: Value) -> Bool {
        let k = ExactKey(key)
        guard index[k] == nil else { return false }
        index[k] = keys.count
        keys.append(key)
        values_.append(value)
        return true
    }

    public func contains(_ key: String) -> Bool { index[ExactKey(key)] != nil }
    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }
    /// Values in key order.
    public var values: [Value] { values_ }
    /// (key, value) pairs in key order.
    public var pairs: [(String, Value)] { Array(zip(keys, values_)) }
}

extension OrderedMap: Sendable where Value: Sendable {}

extension OrderedMap: Equatable where Value: Equatable {
    /// Equal when the same keys map to equal values, regardless of order (Python dict equality).
    public static func == (a: OrderedMap, b: OrderedMap) -> Bool {
        guard a.count == b.count else { return false }
        for (k, v) in zip(a.keys, a.values_) {
            guard let w = b[k], w == v else { return false }
        }
        return true
    }
}

extension OrderedMap: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, Value)...) { self.init(elements) }
}
