"""What the node, the store and the console all speak. Imports nothing from them."""
