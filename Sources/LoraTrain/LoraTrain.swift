// LoraTrain: the training loop (Settings/: the settings and their file;
// Training/: setup, loop, checkpoints, schedules, metrics, MPI), generation
// (Generation/) and merge (Merging/), on top of LoraModel and LoraText.
// ModelText (here) is a model's tokenizer and chat template, which all three read.
import LoraModel
import LoraText
