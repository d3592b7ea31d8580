"""Registry metadata the offline baseline SUT needs when it moves an npm lock entry.

npm writes a lock entry's ``license``, ``dependencies``, ``bin``, ``engines`` … from the
package's own manifest *at the new version* (axios 0.28.0 declares ``proxy-from-env``, 0.27.2
did not). The baseline runs without network, so this module is its registry cache: one entry
per ``name@version`` it may move to or add, with exactly the fields npm puts in the lock
(placement flags, ``resolved`` and ``integrity`` are the baseline's own business; see
README.md, "The integrity decision"). Values were read from registry.npmjs.org (``npm view
NAME@VERSION``) when the cases were authored; tests/test_baseline_sut.py checks them against
every case's npm-written ``expected/package-lock.json``. Add the entries of a new npm case
here, or the baseline keeps the old version's fields and fails the case.
"""

from __future__ import annotations

from typing import Any

NPM_MANIFESTS: dict[str, dict[str, Any]] = {
    "axios@0.28.0": {
        "license": "MIT",
        "dependencies": {
            "follow-redirects": "^1.15.0",
            "form-data": "^4.0.0",
            "proxy-from-env": "^1.1.0",
        },
    },
    "express@4.19.2": {
        "license": "MIT",
        "dependencies": {
            "accepts": "~1.3.8",
            "array-flatten": "1.1.1",
            "body-parser": "1.20.2",
            "content-disposition": "0.5.4",
            "content-type": "~1.0.4",
            "cookie": "0.6.0",
            "cookie-signature": "1.0.6",
            "debug": "2.6.9",
            "depd": "2.0.0",
            "encodeurl": "~1.0.2",
            "escape-html": "~1.0.3",
            "etag": "~1.8.1",
            "finalhandler": "1.2.0",
            "fresh": "0.5.2",
            "http-errors": "2.0.0",
            "merge-descriptors": "1.0.1",
            "methods": "~1.1.2",
            "on-finished": "2.4.1",
            "parseurl": "~1.3.3",
            "path-to-regexp": "0.1.7",
            "proxy-addr": "~2.0.7",
            "qs": "6.11.0",
            "range-parser": "~1.2.1",
            "safe-buffer": "5.2.1",
            "send": "0.18.0",
            "serve-static": "1.15.0",
            "setprototypeof": "1.2.0",
            "statuses": "2.0.1",
            "type-is": "~1.6.18",
            "utils-merge": "1.0.1",
            "vary": "~1.1.2",
        },
        "engines": {"node": ">= 0.10.0"},
    },
    "json5@1.0.2": {
        "license": "MIT",
        "dependencies": {"minimist": "^1.2.0"},
        "bin": {"json5": "lib/cli.js"},
    },
    "lodash@4.17.21": {"license": "MIT"},
    "minimist@1.2.6": {"license": "MIT"},
    "proxy-from-env@1.1.0": {"license": "MIT"},
    "semver@6.3.1": {"license": "ISC", "bin": {"semver": "bin/semver.js"}},
    "tough-cookie@4.1.3": {
        "license": "BSD-3-Clause",
        "dependencies": {
            "psl": "^1.1.33",
            "punycode": "^2.1.1",
            "universalify": "^0.2.0",
            "url-parse": "^1.5.3",
        },
        "engines": {"node": ">=6"},
    },
}
