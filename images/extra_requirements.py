"""Print the requirements of the package's base and of one extra, one per line, from pyproject.toml.

images/Dockerfile installs them (with requirements.lock as constraints) before it copies the
sources, so that a code change rebuilds only the layer that installs the project itself.
"""

import sys
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(*project["dependencies"], *project["optional-dependencies"][sys.argv[1]], sep="\n")
