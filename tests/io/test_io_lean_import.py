"""Importing measure / io / data must not pull heavy optional libraries."""

import subprocess
import sys


def test_my_packages_import_lean():
    code = (
        "import sys, netsculpt.measure, netsculpt.io, netsculpt.data, netsculpt.utils\n"
        "heavy = ('torchvision', 'transformers', 'matplotlib', 'onnx', 'sklearn', 'mnist1d')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
