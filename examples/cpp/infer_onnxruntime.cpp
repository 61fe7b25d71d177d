// Runs an ONNX Runtime engine (model.onnx, the onnxruntime backend's CPU engines: fp32, int8)
// with ONNX Runtime's C API, with the session settings the engine was built and verified with.
#include <onnxruntime_c_api.h>

#include <memory>

#include "common.h"

namespace {

const std::string kUsage =
    std::string("usage: infer_onnxruntime ENGINE INPUT.npy [--output LOGITS.npy] [--top-k K]\n"
                "\n"
                "Runs the ONNX Runtime engine ENGINE (its folder, or its model.onnx) on the images in INPUT.npy\n") +
    example::kCpuRunnerUsage +
    "It needs the manifest.json that densenet-trt build writes beside the engine: the input is\n"
    "checked against its batch range and image size and fed to its input by name, and the session\n"
    "gets its recorded graph optimization level and thread count, as densenet_trt.load's does.\n";

// The C API of the libonnxruntime this program runs with, at the version of its header.
const OrtApi& ort() {
    static const OrtApi* api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    if (api == nullptr) {
        throw std::runtime_error(std::string("libonnxruntime ") + OrtGetApiBase()->GetVersionString() +
                                 " lacks the C API version " + std::to_string(ORT_API_VERSION) +
                                 " of the header this program was built with; use a newer onnxruntime");
    }
    return *api;
}

// Throws the message of a failed call, prefixed with `what`.
void check(OrtStatus* status, const std::string& what) {
    if (status != nullptr) {
        const std::string message = ort().GetErrorMessage(status);
        ort().ReleaseStatus(status);
        throw std::runtime_error(what + ": " + example::first_line(message));
    }
}

// An ONNX Runtime object released by its OrtApi::Release* function.
template <auto Release>
struct Releaser {
    template <typename T>
    void operator()(T* object) const {
        (ort().*Release)(object);
    }
};
template <typename T, auto Release>
using Owned = std::unique_ptr<T, Releaser<Release>>;
using Env = Owned<OrtEnv, &OrtApi::ReleaseEnv>;
using SessionOptions = Owned<OrtSessionOptions, &OrtApi::ReleaseSessionOptions>;
using Session = Owned<OrtSession, &OrtApi::ReleaseSession>;
using MemoryInfo = Owned<OrtMemoryInfo, &OrtApi::ReleaseMemoryInfo>;
using Value = Owned<OrtValue, &OrtApi::ReleaseValue>;
using ShapeInfo = Owned<OrtTensorTypeAndShapeInfo, &OrtApi::ReleaseTensorTypeAndShapeInfo>;

GraphOptimizationLevel optimization_level(const std::string& name) {
    for (const auto& [text, level] : {std::pair{"ORT_DISABLE_ALL", ORT_DISABLE_ALL},
                                      std::pair{"ORT_ENABLE_BASIC", ORT_ENABLE_BASIC},
                                      std::pair{"ORT_ENABLE_EXTENDED", ORT_ENABLE_EXTENDED},
                                      std::pair{"ORT_ENABLE_ALL", ORT_ENABLE_ALL}}) {
        if (name == text) {
            return level;
        }
    }
    throw std::runtime_error("the manifest's graph_optimization_level " + name +
                             " is not ONNX Runtime's; rebuild the engine");
}

// The manifest's settings an engine of this program must have: the CPU provider, float32 input.
void check_settings(const example::Manifest& manifest) {
    const std::string provider = manifest.required({"backend_settings", "provider"});
    if (provider != "CPUExecutionProvider") {
        throw std::runtime_error("this engine runs on ONNX Runtime's " + provider +
                                 "; infer_onnxruntime runs CPU engines (CPUExecutionProvider)");
    }
    const std::string dtype = manifest.required({"input", "dtype"});
    if (dtype != "float32") {
        throw std::runtime_error("this engine takes " + dtype + " input; infer_onnxruntime feeds float32");
    }
}

Session open_session(const OrtEnv* env, const std::string& file, const example::Manifest& manifest) {
    OrtSessionOptions* raw_options = nullptr;
    check(ort().CreateSessionOptions(&raw_options), "cannot create session options");
    const SessionOptions options(raw_options);
    const auto level = optimization_level(manifest.required({"backend_settings", "graph_optimization_level"}));
    check(ort().SetSessionGraphOptimizationLevel(options.get(), level), "cannot set the optimization level");
    if (const int64_t threads = manifest.optional_integer({"threads"})) {
        check(ort().SetIntraOpNumThreads(options.get(), static_cast<int>(threads)), "cannot set the threads");
    }
    OrtSession* session = nullptr;
    check(ort().CreateSession(env, file.c_str(), options.get(), &session), "cannot load " + file + " as ONNX");
    return Session(session);
}

// Runs the session on the images; the logits (N, classes) of its output `output_name`.
std::pair<std::vector<int64_t>, std::vector<float>> run(OrtSession* session, npy::Array& images,
                                                        const std::string& input_name,
                                                        const std::string& output_name) {
    OrtMemoryInfo* raw_memory = nullptr;
    check(ort().CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &raw_memory), "cannot describe memory");
    const MemoryInfo memory(raw_memory);
    OrtValue* raw_input = nullptr;
    check(ort().CreateTensorWithDataAsOrtValue(memory.get(), images.data.data(), images.data.size() * sizeof(float),
                                               images.shape.data(), images.shape.size(),
                                               ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &raw_input),
          "cannot make the input tensor");
    const Value input(raw_input);
    const char* input_names[] = {input_name.c_str()};
    const char* output_names[] = {output_name.c_str()};
    const OrtValue* inputs[] = {input.get()};
    OrtValue* raw_output = nullptr;
    check(ort().Run(session, nullptr, input_names, inputs, 1, output_names, 1, &raw_output),
          "the engine cannot run input of shape " + npy::shape_text(images.shape));
    const Value output(raw_output);
    OrtTensorTypeAndShapeInfo* raw_info = nullptr;
    check(ort().GetTensorTypeAndShape(output.get(), &raw_info), "cannot read the output's shape");
    const ShapeInfo info(raw_info);
    size_t rank = 0;
    ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    check(ort().GetDimensionsCount(info.get(), &rank), "cannot read the output's shape");
    check(ort().GetTensorElementType(info.get(), &type), "cannot read the output's type");
    std::vector<int64_t> shape(rank);
    check(ort().GetDimensions(info.get(), shape.data(), rank), "cannot read the output's shape");
    if (rank != 2 || type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        throw std::runtime_error("the engine's output " + output_name + " has shape " + npy::shape_text(shape) +
                                 ", not float32 (N, classes)");
    }
    float* data = nullptr;
    check(ort().GetTensorMutableData(output.get(), reinterpret_cast<void**>(&data)), "cannot read the output");
    return {shape, std::vector<float>(data, data + shape[0] * shape[1])};
}

void infer(const example::Options& options) {
    const auto [file, manifest] = example::engine_with_manifest(options.engine, "infer_onnxruntime");
    check_settings(manifest);
    npy::Array images = example::read_input(options.input, manifest);
    example::check_input(images.shape, manifest.input_range());

    OrtEnv* raw_env = nullptr;
    check(ort().CreateEnv(ORT_LOGGING_LEVEL_ERROR, "infer_onnxruntime", &raw_env), "cannot start ONNX Runtime");
    const Env env(raw_env);
    const Session session = open_session(env.get(), file, manifest);
    const auto [shape, logits] =
        run(session.get(), images, manifest.required({"input", "name"}), manifest.required({"output", "name"}));
    example::report(options, shape[0], shape[1], logits);
}

}  // namespace

int main(int argc, char** argv) {
    return example::run(argc, argv, kUsage, false, infer);
}
