// LoraText: text in. Hugging Face tokenizers (tokenizer.json), chat templates
// rendered by a Jinja interpreter, JSONL datasets with loss masks, batches.
// Depends on LoraBase (JSON) only; knows nothing of OpenCL or the model.
