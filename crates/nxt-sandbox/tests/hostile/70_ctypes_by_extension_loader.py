# hostile: load _ctypes through the extension loader, around the import statement
# expect: failed
# outcome: load error
# test: assert f() == 1
import glob, sys, importlib.machinery, importlib.util
path = glob.glob(sys.base_prefix + "/lib/python3*/lib-dynload/_ctypes*.so")[0]
loader = importlib.machinery.ExtensionFileLoader("_ctypes", path)
spec = importlib.util.spec_from_file_location("_ctypes", path, loader=loader)
mod = importlib.util.module_from_spec(spec)
def f():
    return 1
