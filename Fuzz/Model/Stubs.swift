// Fuzz build only: GGUFTensors.swift names AdapterPlan and LoraConfig (in GGUFCheckpoint.unusedTensors,
// which no target calls); these stand-ins keep the fuzz module to the file-format sources.
struct LoraConfig { init() {} }
struct AdapterPlan {
    struct Site { var path: String; var hasBias: Bool }
    var linears: [Site] { [] }
    init(config: ModelConfig, lora: LoraConfig) throws {}
}
