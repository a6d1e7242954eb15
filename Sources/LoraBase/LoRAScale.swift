/// The one scale formula (PEFT's `scaling`): s = lora_alpha / r, or lora_alpha / √r
/// with rsLoRA, in float64 as Python computes it; the kernels take it rounded to fp32,
/// as PyTorch does when it multiplies an fp32 tensor by a Python float. Training,
/// generation, merge and inspect all take s from here (through LoraConfig.scale(for:)).
public enum LoRAScale {
    public static func of(alpha: Double, rank: Int, rsLoRA: Bool) -> Double {
        rsLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank)
    }
}
