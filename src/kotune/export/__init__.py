"""Export trained runs for other runtimes: GGUF for llama.cpp, with an Ollama Modelfile."""
