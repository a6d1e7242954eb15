import Foundation
import LoraBase
@testable import LoraModel
import LoraOps
import Reference
import XCTest

/// Pooled hidden states (`lora-gpu embed`) against transformers + PEFT:
/// Tests/Fixtures/tasks/embeddings.json from scripts/make_embedding_fixture.py
/// (the causal parity fixtures' models with their final adapters, a right-padded batch).
final class PoolingTests: XCTestCase {
    func testPooledVectorsEqualTransformersPlusPEFT() throws {
        let path = taskFixturesRoot + "/embeddings.json"
        let cases = try XCTUnwrap(try JSONValue.read(path: path)["cases"]?.array)
        XCTAssertEqual(cases.count, 3)
        for c in cases {
            let name = c["name"]!.string!
            let rc = try ReferenceCase(name)
            var lora = try LoraConfig.load(path: rc.dir + "/adapter_final/adapter_config.json")
            lora.inferenceMode = false
            let m = try LlamaLoRAModel(modelDirectory: rc.dir + "/model", lora: lora, context: try ComputeContext.shared())
            try m.loadAdapter(directory: rc.dir + "/adapter_final")
            let ids = c["input_ids"]!.array!.map { $0.array!.map { $0.integral! } }
            let lengths = c["lengths"]!.array!.map { $0.integral! }
            // Padding positions hold whatever id: the vectors must not depend on them.
            let padded = zip(ids, lengths).map { row, n in row.enumerated().map { $0.offset < n ? $0.element : 0 } }
            let b = try TokenBatch(inputIDs: padded)
            for (pooling, normalize, key) in [(Pooling.last, false, "last"), (.mean, false, "mean"),
                                              (.last, true, "last_normalized"), (.mean, true, "mean_normalized")] {
                let got = try m.pooledHiddenStates(b, lengths: lengths, pooling: pooling, normalize: normalize)
                let want = c[key]!.array!.flatMap { $0.array!.map { $0.double! } }
                let e = relativeError(got, want)
                XCTAssertLessThanOrEqual(e, 1e-5, "\(name) \(key): relative error \(e)")
            }
        }
    }
}
