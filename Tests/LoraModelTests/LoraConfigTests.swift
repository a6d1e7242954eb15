import Foundation
import LoraBase
import LoraModel
import XCTest

/// The one LoRA configuration type: adapter_config.json is read with JSON's types (as PEFT
/// reads it), what PEFT writes reads back, and the scale has one formula.
final class LoraConfigTests: XCTestCase {
    func parse(_ json: String) throws -> LoraConfig { try LoraConfig.parse(Data(json.utf8), path: "adapter_config.json") }

    func testAdapterConfigValuesKeepTheirJSONTypes() {
        let cases: [(String, String, String)] = [
            ("use_rslora", #""yes""#, "must be true or false"), ("inference_mode", "1", "must be true or false"),
            ("target_modules", "5", "must be a list of strings, a regex"), ("target_modules", "[\"q_proj\", 3]", "list of strings"),
            ("modules_to_save", #""lm_head""#, "must be a list of strings"),
            ("layers_to_transform", #""1,2""#, "an integer or a list of integers"),
            ("init_lora_weights", #""true""#, "not supported"), ("r", #""4""#, "positive integer"),
            ("lora_alpha", "true", "non-negative number"),
        ]
        for (key, value, message) in cases {
            let json = key == "target_modules" ? #"{"target_modules": \#(value)}"# : #"{"target_modules": ["q_proj"], "\#(key)": \#(value)}"#
            XCTAssertThrowsError(try parse(json), "\(key): \(value)") {
                XCTAssertTrue("\($0)".contains("field '\(key)'") && "\($0)".contains(message), "\(key): \(value): \($0)")
            }
        }
        XCTAssertEqual(try parse(#"{"target_modules": ["q_proj"], "init_lora_weights": "Gaussian", "layers_to_transform": 1}"#).initLoraWeights,
                       .gaussian)
    }

    func testPEFTsJSONReadsBackToTheSameConfig() throws {
        let c = LoraConfig(r: 12, loraAlpha: 24.5, loraDropout: 0.05, targetModules: .regex(#".*\.(q|v)_proj"#),
                           excludeModules: .list(["lm_head"]), bias: .loraOnly, useRSLoRA: true, initLoraWeights: .gaussian,
                           layersToTransform: [0, 2], layersPattern: ["layers"], rankPattern: ["q_proj": 4, "v_proj": 6],
                           alphaPattern: ["q_proj": 8], modulesToSave: ["embed_tokens"])
        let back = try LoraConfig.parse(c.peftJSON(baseModel: "m"), path: "adapter_config.json")
        XCTAssertEqual(back, LoraConfig(r: 12, loraAlpha: 24.5, loraDropout: 0.05, targetModules: c.targetModules,
                                        excludeModules: c.excludeModules, bias: .loraOnly, useRSLoRA: true,
                                        initLoraWeights: .gaussian, layersToTransform: [0, 2], layersPattern: ["layers"],
                                        rankPattern: ["q_proj": 4, "v_proj": 6], alphaPattern: ["q_proj": 8],
                                        modulesToSave: ["embed_tokens"], inferenceMode: true))
        let json = try XCTUnwrap(JSONValue.parse(c.peftJSON(baseModel: "m")).object)
        XCTAssertEqual(json["lora_alpha"], 24.5)
        XCTAssertEqual(json["r"], 12)
        XCTAssertEqual(json["peft_type"], "LORA")
        XCTAssertEqual(json.keys, json.keys.sorted(), "sorted as PEFT's json.dumps(sort_keys=True)")
    }

    func testOneScaleFormula() {
        let c = LoraConfig(r: 16, loraAlpha: 32, useRSLoRA: true, rankPattern: ["v_proj": 9])
        XCTAssertEqual(c.scale(for: "model.layers.0.self_attn.q_proj"), 8)
        XCTAssertEqual(c.scale(for: "model.layers.0.self_attn.v_proj"), 32.0 / 3)
        XCTAssertEqual(c.scale(for: "model.layers.0.self_attn.v_proj"), LoRAScale.of(alpha: 32, rank: 9, rsLoRA: true))
    }
}
