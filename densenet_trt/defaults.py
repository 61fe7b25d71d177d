"""Every default the library's functions and the command line share, in one place: the library's
signatures read them, and the CLI's options take them from here rather than restating them
(``tests/test_architecture.py`` fails on a number or a name written as an option's default in
``cli/``)."""

# The model, and where engines and calibrations go (build, export, calibrate).
MODEL = "densenet121"
BATCH = "1"  # an engine's batch range: N or MIN:OPT:MAX
OPSET = 18  # the ONNX opset of ONNX captures (capture.MIN_OPSET to capture.MAX_OPSET)
RANDOM_SEED = 0  # random weights, calibration sample draws, compare's random inputs

# build and verify
PRECISION = "fp32"
BACKEND = "auto"
ENGINES = "engines"  # the folder engines go in
VERIFY_SAMPLES = 16  # distinct random inputs verify compares

# calibrate
CALIBRATIONS = "calibration"  # the folder calibrations go in
CALIBRATION_METHOD = "max"
CALIBRATION_SAMPLES = 512
CALIBRATION_BATCH_SIZE = 32
PERCENTILE = 99.99  # the percentile method's share of |activation| kept

# sensitivity
SENSITIVITY_SEED = 1
SENSITIVITY_BATCH_SIZE = 32

# compare
COMPARE_SAMPLES = 8

# profile
PROFILE_BATCH_SIZE = 1
PROFILE_MODE = "both"
PROFILE_VS = "eager"
PROFILE_WARMUP = 3  # warm-up rounds before each measurement
PROFILE_DURATION = 5.0  # seconds of each measurement, as trtexec's --duration
PROFILE_GAP = 0.2  # seconds of pause before each timed CPU call in latency mode
PROFILE_LAYERS = 0  # slowest layers listed per engine
SLOWEST_LAYERS = 10  # what profile's --layers lists when given no number

# predict and export-triton
TOP_K = 5
TRITON_INSTANCES = 1

# serve (Triton's own ports) and loadtest
SERVE_HOST = "127.0.0.1"
SERVE_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
SERVE_QUEUE_DELAY_US = 100  # as export-triton's dynamic_batching
LOADTEST_CONCURRENCIES = (1, 2, 4, 8)
LOADTEST_DURATION = 10.0  # seconds of each concurrency step
LOADTEST_WARMUP = 2.0  # seconds of warm-up before each step
LOADTEST_WAIT = 120.0  # seconds for the server and the model to be ready
