"""Empty: the bootstrap fills a fresh import of it with a built-in module's names (os, sys, select, gc)."""
