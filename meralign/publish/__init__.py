"""Publishing: the model folder, export, the model card, the Space files and the push."""
