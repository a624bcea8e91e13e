#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run the doctests: the files named on the command line (the CancelToken
documentation's examples) and the docstrings of the package cancelfd.

The CancelToken documentation shows an exception as its name alone
("TimeoutError"), as a reader sees it at the end of the traceback; an
example whose expected output is one such name expects that exception.
Prints "N passed, N failed" and exits non-zero on a failure.
"""
import doctest
import re
import sys

_EXC = re.compile(r"^[A-Z]\w*(Error|Exception|Cancelled|Mismatch)\n$")


class Parser(doctest.DocTestParser):
    def parse(self, string, name="<string>"):
        out = super().parse(string, name)
        for ex in out:
            if isinstance(ex, doctest.Example) and ex.exc_msg is None \
                    and _EXC.match(ex.want):
                ex.exc_msg = ex.want
        return out


def main(files):
    import cancelfd
    import cancelfd._scope
    import cancelfd._token

    flags = doctest.ELLIPSIS
    passed = failed = 0
    for path in files:
        r = doctest.testfile(path, module_relative=False, parser=Parser(),
                             optionflags=flags, verbose=False)
        print("%s: %d examples, %d failed" % (path, r.attempted, r.failed))
        passed += r.attempted - r.failed
        failed += r.failed
    for mod in (cancelfd, cancelfd._token, cancelfd._scope):
        r = doctest.testmod(mod, optionflags=flags)
        print("%s: %d examples, %d failed" % (mod.__name__, r.attempted,
                                              r.failed))
        passed += r.attempted - r.failed
        failed += r.failed
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
