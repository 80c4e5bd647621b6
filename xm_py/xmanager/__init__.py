"""XManager: launch scripts, a launcher daemon client and its command-line interface.

`from xmanager import xm, xm_local` as with DeepMind's XManager. Importing this package imports
nothing else: each subpackage is loaded only when used.
"""

__version__ = "0.1.0"
