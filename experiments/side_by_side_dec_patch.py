"""Run-time patches to an EXPORTED COPY of XifengGuo/DEC-keras (never the mirror, never this repo).

usage: python side_by_side_dec_patch.py EXPORTED_COPY_DIR
Called by experiments/side_by_side_dec.sh. The edits are only what running DEC's own
MNIST pretraining on a CPU with local data under TensorFlow 2.21 + tf_keras 2.21 needs, plus
per-epoch timing lines and a stop after pretraining. Model, init, optimizer, loss, batch size and
Keras fit() loop stay DEC's own. Each edit must match exactly the expected number of times,
otherwise this exits non-zero (so an upstream change is noticed instead of silently measured).
A file already carrying the marker is skipped (idempotent).

The edits and why (one PATCHES row each, same order):
  DEC.py
   1-7. every `keras` import -> `tf_keras`: TF 2.21 ships Keras 3 as `keras`; its `keras.backend`
        lacks sum/square/expand_dims/transpose used by ClusteringLayer (built by DEC.__init__
        even for pretraining) and `keras.engine.topology` is gone. tf_keras 2.21 is the Keras 2
        API the code was written for (Layer and InputSpec now live in tf_keras.layers).
   8.   SGD(lr=1, ...) -> SGD(learning_rate=1, ...) (mnist and reuters10k branches): tf_keras
        >= 2.11 drops `lr` with only a warning, leaving the default 0.01, not DEC's lr 1.
   9.   an epoch-timer callback class after the imports: timing instrumentation only;
        prints a line "[epoch_time] EPOCH SECONDS", the wall time from on_epoch_begin to
        on_epoch_end of fit().
  10.   pretrain()'s callback list gets the timer first (so its epoch excludes the other
        callbacks' epoch-end work, e.g. the CSV line).
  11.   main passes y=None to pretrain(): with y, DEC's PrintACC callback runs KMeans at every
        epoch end when epochs < 10 (and every epochs/10 otherwise); it calls KMeans(n_jobs=4)
        (argument removed in scikit-learn 1.0, TypeError) and metrics.acc imports
        sklearn.utils.linear_assignment_ (removed in 0.23). Per-epoch clustering evaluation is
        not part of the training epoch; our side also evaluates only after pretraining.
  12.   main exits after pretraining when DEC_PRETRAIN_ONLY is set: only the pretraining epoch
        is compared; the clustering stage would otherwise run up to 2e4 iterations and then
        call metrics.acc (same removed sklearn import).
  datasets.py
  13.   load_mnist() reads the four IDX .gz files in $MNIST_IDX_DIR instead of
        keras.datasets.mnist.load_data() (a download; none allowed). Same uint8 arrays, so the
        rest of load_mnist (train+test concatenation, reshape to 784, /255. as float64) is
        DEC's own.
"""
import os, sys

MARK = "# [peers-patched]"

TIMER = '''

class _PeersEpochTimer(callbacks.Callback):  ''' + MARK + ''' timing instrumentation only
    def on_epoch_begin(self, epoch, logs=None):
        import time as _t
        self._tic = _t.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        import time as _t
        # (leading newline: Keras' progress bar leaves its line open)
        print('\\n[epoch_time] %d %.6f' % (epoch + 1, _t.perf_counter() - self._tic), flush=True)
'''

IDX = '''    import gzip, os  ''' + MARK + ''' local IDX files instead of a download

    def _idx(name):
        raw = gzip.open(os.path.join(os.environ['MNIST_IDX_DIR'], name), 'rb').read()
        dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], 'big') for i in range(raw[3])]
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * raw[3]).reshape(dims)
    x_train, y_train = _idx('train-images-idx3-ubyte.gz'), _idx('train-labels-idx1-ubyte.gz')
    x_test, y_test = _idx('t10k-images-idx3-ubyte.gz'), _idx('t10k-labels-idx1-ubyte.gz')
'''

# (file, old, new, expected_count)
PATCHES = [
    ("DEC.py", "import keras.backend as K\n", "import tf_keras.backend as K  " + MARK + "\n", 1),
    ("DEC.py", "from keras.engine.topology import Layer, InputSpec\n",
     "from tf_keras.layers import Layer, InputSpec  " + MARK + "\n", 1),
    ("DEC.py", "from keras.layers import Dense, Input\n", "from tf_keras.layers import Dense, Input  " + MARK + "\n", 1),
    ("DEC.py", "from keras.models import Model\n", "from tf_keras.models import Model  " + MARK + "\n", 1),
    ("DEC.py", "from keras.optimizers import SGD\n", "from tf_keras.optimizers import SGD  " + MARK + "\n", 1),
    ("DEC.py", "from keras import callbacks\n", "from tf_keras import callbacks  " + MARK + "\n", 1),
    ("DEC.py", "from keras.initializers import VarianceScaling\n",
     "from tf_keras.initializers import VarianceScaling  " + MARK + "\n", 1),
    ("DEC.py", "SGD(lr=1, momentum=0.9)", "SGD(learning_rate=1, momentum=0.9)", 2),
    ("DEC.py", "import metrics\n", "import metrics\n" + TIMER, 1),
    ("DEC.py", "        cb = [csv_logger]\n", "        cb = [_PeersEpochTimer(), csv_logger]  " + MARK + "\n", 1),
    ("DEC.py", "dec.pretrain(x=x, y=y, optimizer=pretrain_optimizer,\n",
     "dec.pretrain(x=x, y=None, optimizer=pretrain_optimizer,  " + MARK + "\n", 1),
    ("DEC.py", "    dec.model.summary()\n",
     "    if os.environ.get('DEC_PRETRAIN_ONLY'):  " + MARK + "\n        raise SystemExit(0)\n"
     "    dec.model.summary()\n", 1),
    ("datasets.py", "    from keras.datasets import mnist\n    (x_train, y_train), (x_test, y_test) = mnist.load_data()\n",
     IDX, 1),
]


def main(root):
    by_file = {}
    for p in PATCHES:
        by_file.setdefault(p[0], []).append(p)
    for fname, plist in by_file.items():
        path = os.path.join(root, fname)
        src = open(path).read()
        if MARK in src:
            print("already patched:", fname)
            continue
        for _, old, new, count in plist:
            got = src.count(old)
            if got != count:
                sys.exit("PATCH FAILED in %s: expected %d match(es) of %r, found %d" % (fname, count, old[:60], got))
            src = src.replace(old, new)
            print("patched %-11s x%d  %s" % (fname, count, old.strip().splitlines()[0][:60]))
        open(path, "w").write(src)


if __name__ == "__main__":
    main(sys.argv[1])
