"""Label alignment across vocabularies: text (embeddings), clustering (Mean Shift), nearest, outputs, figure, cli."""
