// LoraTrain: the training loop, learning-rate schedules, checkpoints and
// resume, merge and generation, on top of LoraModel and LoraText.
import LoraModel
import LoraText
