"""Test entry point: runs pytest, then exits with pytest's status at once.

The Temporal SDK's runtime can abort the interpreter during finalisation after a test session
(sdk-python issue #300, `PyGILState_Release`), turning a green run into exit 134. Leaving with
`os._exit` once pytest has reported keeps the exit status pytest's own.
"""

import os
import sys

import pytest

if __name__ == "__main__":
    code = pytest.main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))
