"""Text encoders behind one interface (`TextEncoder`), and a cache of prompt embeddings."""
from helpers.text.encoders import MiniLMEncoder, TextEncoder, cached_embeddings, load_text_encoder

__all__ = ["MiniLMEncoder", "TextEncoder", "cached_embeddings", "load_text_encoder"]
