"""Every command's --help works without the optional extras (torch, tvm)."""

import subprocess
import sys

BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'tvm', 'tvm_ffi', 'onnxscript'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
from onnx_hawq.cli.main import main
codes = [main([c, '--help']) for c in sys.argv[1:]] + [main(['--help'])]
sys.exit(max(codes))
"""

COMMANDS = ["quantize", "validate", "inspect", "plan", "profile", "sensitivity", "auto", "compile"]


def test_help_without_torch_or_tvm():
    result = subprocess.run([sys.executable, "-c", BLOCK, *COMMANDS], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for cmd in COMMANDS:
        assert cmd in result.stdout
