"""The console's screens, one module each; ``ConsoleApp.MODES`` maps keys to them."""
