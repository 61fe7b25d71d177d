// Runs a raw TensorRT plan (model.engine: densenet-trt build --backend tensorrt --format engine,
// or --backend tensorrt-onnx) with TensorRT's runtime and the CUDA runtime, no libtorch. Written
// for TensorRT 10 and 11 (checked to compile against the 10.3 and 11.1 headers): engines whose
// one input and one output are float32, float16 or bfloat16 tensors.
#include <NvInferRuntime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <memory>

#include "common.h"

static_assert(NV_TENSORRT_MAJOR >= 10, "infer_tensorrt is written for TensorRT 10 and 11");

namespace {

const char* const kUsage =
    "usage: infer_tensorrt ENGINE.engine INPUT.npy [--output LOGITS.npy] [--top-k K]\n"
    "\n"
    "Runs the TensorRT plan ENGINE.engine on the GPU on the float32 images (N, C, H, W) in\n"
    "INPUT.npy and prints the top K classes of each image (default 5) with their softmax\n"
    "probabilities.\n"
    "\n"
    "  --output LOGITS.npy  also write the logits (N, classes) as float32 .npy\n"
    "  --top-k K            how many classes to print per image\n"
    "\n"
    "The input's shape must lie within the engine's optimization profile; fp16 and bf16 engines\n"
    "get it converted to their type. A plan runs only with the TensorRT release that built it and\n"
    "on the GPU architecture it was built for (unless built version- or hardware-compatible).\n"
    "A DLA plan (densenet-trt build --dla-core N) runs on the DLA core that the manifest.json\n"
    "beside it records.\n";

// Keeps TensorRT's last error for the one-line message; prints its warnings.
class Logger : public nvinfer1::ILogger {
public:
    void log(Severity severity, const char* message) noexcept override {
        if (severity <= Severity::kERROR) {
            last_error = message;
        } else if (severity == Severity::kWARNING) {
            std::cerr << "TensorRT warning: " << message << "\n";
        }
    }

    std::string last_error;
};

void check(cudaError_t status, const char* call) {
    if (status != cudaSuccess) {
        throw std::runtime_error(std::string(call) + " failed: " + cudaGetErrorString(status));
    }
}

// GPU memory, freed when it goes out of scope.
class DeviceBuffer {
public:
    explicit DeviceBuffer(size_t bytes) { check(cudaMalloc(&data_, bytes), "cudaMalloc"); }
    ~DeviceBuffer() { cudaFree(data_); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    void* get() const { return data_; }

private:
    void* data_ = nullptr;
};

class Stream {
public:
    Stream() { check(cudaStreamCreate(&stream_), "cudaStreamCreate"); }
    ~Stream() { cudaStreamDestroy(stream_); }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    cudaStream_t get() const { return stream_; }

private:
    cudaStream_t stream_ = nullptr;
};

size_t type_size(nvinfer1::DataType type) {
    switch (type) {
    case nvinfer1::DataType::kFLOAT:
        return sizeof(float);
    case nvinfer1::DataType::kHALF:
    case nvinfer1::DataType::kBF16:
        return 2;
    default:
        throw std::runtime_error("the engine's input or output is not float32, float16 or bfloat16");
    }
}

// float32 values as a tensor of `type`, and back.
std::vector<char> encode(const std::vector<float>& values, nvinfer1::DataType type) {
    const size_t size = type_size(type);
    std::vector<char> bytes(values.size() * size);
    for (size_t i = 0; i < values.size(); ++i) {
        if (type == nvinfer1::DataType::kHALF) {
            const __half value = __float2half(values[i]);
            std::memcpy(bytes.data() + i * size, &value, size);
        } else if (type == nvinfer1::DataType::kBF16) {
            const __nv_bfloat16 value = __float2bfloat16(values[i]);
            std::memcpy(bytes.data() + i * size, &value, size);
        } else {
            std::memcpy(bytes.data() + i * size, &values[i], size);
        }
    }
    return bytes;
}

std::vector<float> decode(const std::vector<char>& bytes, nvinfer1::DataType type) {
    const size_t size = type_size(type);
    std::vector<float> values(bytes.size() / size);
    for (size_t i = 0; i < values.size(); ++i) {
        if (type == nvinfer1::DataType::kHALF) {
            __half value;
            std::memcpy(&value, bytes.data() + i * size, size);
            values[i] = __half2float(value);
        } else if (type == nvinfer1::DataType::kBF16) {
            __nv_bfloat16 value;
            std::memcpy(&value, bytes.data() + i * size, size);
            values[i] = __bfloat162float(value);
        } else {
            std::memcpy(&values[i], bytes.data() + i * size, size);
        }
    }
    return values;
}

std::vector<int64_t> dims_vector(const nvinfer1::Dims& dims) {
    return std::vector<int64_t>(dims.d, dims.d + std::max(dims.nbDims, 0));
}

// The DLA core the plan was built for: backend_settings.dla_core of the manifest.json beside
// it (tensorrt-onnx records it; null or absent: a GPU plan), else -1, IRuntime's default (no DLA).
int32_t recorded_dla_core(const std::string& engine) {
    const auto manifest = example::Manifest::beside(engine);
    if (!manifest || manifest->value({"backend_settings", "dla_core"}).value_or("null") == "null") {
        return -1;
    }
    return static_cast<int32_t>(manifest->integer({"backend_settings", "dla_core"}));
}

void infer(const example::Options& options) {
    const std::string plan = example::read_file(options.engine, "engine");
    npy::Array images = example::read_images(options.input);
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        throw std::runtime_error("no CUDA device is available here; TensorRT engines run on NVIDIA GPUs");
    }

    Logger logger;
    const std::unique_ptr<nvinfer1::IRuntime> runtime{nvinfer1::createInferRuntime(logger)};
    if (!runtime) {
        throw std::runtime_error("cannot create TensorRT's runtime: " + logger.last_error);
    }
    // A DLA plan's layers run on the core set here, before deserializing.
    const int32_t dla_core = recorded_dla_core(options.engine);
    if (dla_core >= 0) {
        if (dla_core >= runtime->getNbDLACores()) {
            throw std::runtime_error(options.engine + " was built for DLA core " + std::to_string(dla_core) +
                                     "; this device has " + std::to_string(runtime->getNbDLACores()) +
                                     " DLA cores: run it on the board it was built for");
        }
        runtime->setDLACore(dla_core);
    }
    const std::unique_ptr<nvinfer1::ICudaEngine> engine{runtime->deserializeCudaEngine(plan.data(), plan.size())};
    if (!engine) {
        throw std::runtime_error("cannot deserialize " + options.engine + " with TensorRT " +
                                 std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) +
                                 " (not a TensorRT plan, truncated, or built by another TensorRT release or "
                                 "for another GPU): " + logger.last_error);
    }
    std::vector<std::string> inputs;
    std::vector<std::string> outputs;
    for (int32_t i = 0; i < engine->getNbIOTensors(); ++i) {
        const char* name = engine->getIOTensorName(i);
        (engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? inputs : outputs).push_back(name);
    }
    if (inputs.size() != 1 || outputs.size() != 1) {
        throw std::runtime_error(options.engine + " has " + std::to_string(inputs.size()) + " inputs and " +
                                 std::to_string(outputs.size()) + " outputs; this program runs engines with one of each");
    }
    const char* input = inputs[0].c_str();
    const char* output = outputs[0].c_str();

    // Profile 0, the only one densenet-trt builds: the input's shape must lie within it.
    const example::ShapeRange range{
        dims_vector(engine->getProfileShape(input, 0, nvinfer1::OptProfileSelector::kMIN)),
        dims_vector(engine->getProfileShape(input, 0, nvinfer1::OptProfileSelector::kMAX))};
    example::check_input(images.shape, range);

    const std::unique_ptr<nvinfer1::IExecutionContext> context{engine->createExecutionContext()};
    if (!context) {
        throw std::runtime_error("cannot create an execution context: " + logger.last_error);
    }
    nvinfer1::Dims shape{};
    shape.nbDims = static_cast<int32_t>(images.shape.size());
    std::copy(images.shape.begin(), images.shape.end(), shape.d);
    if (!context->setInputShape(input, shape)) {
        throw std::runtime_error("TensorRT refuses input of shape " + npy::shape_text(images.shape) + ": " +
                                 logger.last_error);
    }
    const std::vector<int64_t> output_shape = dims_vector(context->getTensorShape(output));
    if (output_shape.size() != 2) {
        throw std::runtime_error("the engine's output has shape " + npy::shape_text(output_shape) +
                                 ", not (N, classes)");
    }

    const nvinfer1::DataType output_type = engine->getTensorDataType(output);
    const std::vector<char> host_input = encode(images.data, engine->getTensorDataType(input));
    std::vector<char> host_output(output_shape[0] * output_shape[1] * type_size(output_type));
    Stream stream;
    DeviceBuffer device_input(host_input.size());
    DeviceBuffer device_output(host_output.size());
    check(cudaMemcpyAsync(device_input.get(), host_input.data(), host_input.size(), cudaMemcpyHostToDevice,
                          stream.get()),
          "cudaMemcpyAsync");
    if (!context->setTensorAddress(input, device_input.get()) ||
        !context->setTensorAddress(output, device_output.get()) || !context->enqueueV3(stream.get())) {
        throw std::runtime_error("inference failed: " + logger.last_error);
    }
    check(cudaMemcpyAsync(host_output.data(), device_output.get(), host_output.size(), cudaMemcpyDeviceToHost,
                          stream.get()),
          "cudaMemcpyAsync");
    check(cudaStreamSynchronize(stream.get()), "cudaStreamSynchronize");
    example::report(options, output_shape[0], output_shape[1], decode(host_output, output_type));
}

}  // namespace

int main(int argc, char** argv) {
    return example::run(argc, argv, kUsage, false, infer);
}
