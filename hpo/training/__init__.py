"""How to train one trial: build, fit, checkpoint, record, each trial in its own process.

`runner` trains a trial whose parameters are sampled and stores its best checkpoint;
`callbacks` holds its Keras callbacks; `isolation` runs it in a child process forked from a
server with TensorFlow already loaded.
"""
