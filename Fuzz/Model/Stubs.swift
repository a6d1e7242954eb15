// Fuzz build only: GGUFTensors.swift names AdapterPlan (in GGUFCheckpoint.unusedTensors, which no
// target calls); this stand-in keeps the fuzz module to the file-format and config sources.
struct AdapterPlan {
    struct Site { var path: String; var hasBias: Bool }
    var linears: [Site] { [] }
    init(config: ModelConfig, lora: LoraConfig) throws {}
}
