// What the example programs share: the command line, the engine's manifest, the input checks and
// the report (top-k per sample, logits as .npy). Plain C++17, no libtorch, no TensorRT.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iostream>
#include <iterator>
#include <numeric>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "npy.h"

namespace example {

struct Options {
    std::string engine;
    std::string input;
    std::string output;  // empty: no .npy written
    std::string device;  // empty: the engine's own (infer_torchscript only)
    int top_k = 5;
};

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline Options parse_options(int argc, char** argv, bool device_option) {
    Options options;
    std::vector<std::string> positional;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const bool takes_value = arg == "--output" || arg == "--top-k" || (device_option && arg == "--device");
        if (takes_value && i + 1 == argc) {
            throw UsageError(arg + " needs a value");
        }
        if (arg == "--output") {
            options.output = argv[++i];
        } else if (arg == "--top-k") {
            const std::string value = argv[++i];
            if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos ||
                value.size() > 6 || std::stoi(value) < 1) {
                throw UsageError("--top-k takes a positive integer, got '" + value + "'");
            }
            options.top_k = std::stoi(value);
        } else if (device_option && arg == "--device") {
            options.device = argv[++i];
            if (options.device != "cpu" && options.device != "cuda") {
                throw UsageError("--device takes cpu or cuda, got '" + options.device + "'");
            }
        } else if (arg.rfind("--", 0) == 0) {
            throw UsageError("unknown option " + arg);
        } else {
            positional.push_back(arg);
        }
    }
    if (positional.size() != 2) {
        throw UsageError("expected ENGINE and INPUT.npy, got " + std::to_string(positional.size()) + " arguments");
    }
    options.engine = positional[0];
    options.input = positional[1];
    return options;
}

inline std::string first_line(const std::string& text) {
    return text.substr(0, text.find('\n'));
}

// Parses the command line, runs `body` and turns what it throws into one line on stderr:
// exit status 2 for a bad command line (with the usage), 1 for any other error.
inline int run(int argc, char** argv, const std::string& usage, bool device_option,
               const std::function<void(const Options&)>& body) {
    for (int i = 1; i < argc; ++i) {
        if (std::string(argv[i]) == "-h" || std::string(argv[i]) == "--help") {
            std::cout << usage;
            return 0;
        }
    }
    Options options;
    try {
        options = parse_options(argc, argv, device_option);
    } catch (const UsageError& e) {
        std::cerr << "error: " << e.what() << "\n\n" << usage;
        return 2;
    }
    try {
        body(options);
    } catch (const std::exception& e) {
        std::cerr << "error: " << first_line(e.what()) << "\n";
        return 1;
    }
    return 0;
}

// `what` (engine, manifest) at `path` must be a file.
inline void require_file(const std::string& path, const std::string& what) {
    if (!std::filesystem::is_regular_file(path)) {
        throw std::runtime_error(what + " " + path + ": no such file");
    }
}

inline std::string read_file(const std::string& path, const std::string& what) {
    require_file(path, what);
    std::ifstream file(path, std::ios::binary);
    if (!file) {
        throw std::runtime_error(what + " " + path + " cannot be read");
    }
    return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

// Input images: a float32 (N, C, H, W) array.
inline npy::Array read_images(const std::string& path) {
    require_file(path, "input");
    npy::Array images = npy::read(path);
    if (images.shape.size() != 4) {
        throw std::runtime_error(path + " has shape " + npy::shape_text(images.shape) +
                                 "; the engines take images of shape (N, C, H, W)");
    }
    return images;
}

// The shapes an engine takes: each dimension from min to max.
struct ShapeRange {
    std::vector<int64_t> min;
    std::vector<int64_t> max;
};

inline std::string range_text(const ShapeRange& range) {
    std::string text = "(";
    for (size_t i = 0; i < range.min.size(); ++i) {
        text += (i ? ", " : "") + std::to_string(range.min[i]);
        if (range.max[i] != range.min[i]) {
            text += ".." + std::to_string(range.max[i]);
        }
    }
    return text + ")";
}

inline void check_input(const std::vector<int64_t>& shape, const ShapeRange& range) {
    bool fits = shape.size() == range.min.size();
    for (size_t i = 1; fits && i < shape.size(); ++i) {
        fits = range.min[i] <= shape[i] && shape[i] <= range.max[i];
    }
    if (!fits) {
        throw std::runtime_error("input has shape " + npy::shape_text(shape) + "; this engine takes " +
                                 range_text(range));
    }
    if (shape[0] < range.min[0] || shape[0] > range.max[0]) {
        throw std::runtime_error("batch " + std::to_string(shape[0]) + " is outside this engine's range " +
                                 std::to_string(range.min[0]) + ".." + std::to_string(range.max[0]) +
                                 "; split the input or rebuild with --batch MIN:OPT:MAX");
    }
}

// The manifest.json that `densenet-trt build` writes beside every engine: a small reader for
// the members the programs need (numbers, strings, booleans), by their path of keys.
class Manifest {
public:
    // The manifest in the folder of `engine`, if there is one.
    static std::optional<Manifest> beside(const std::string& engine) {
        return in(std::filesystem::path(engine).parent_path().string());
    }

    // The manifest in `folder`, if there is one.
    static std::optional<Manifest> in(const std::string& folder) {
        const auto path = std::filesystem::path(folder) / "manifest.json";
        if (!std::filesystem::is_regular_file(path)) {
            return std::nullopt;
        }
        return Manifest(path.string(), read_file(path.string(), "manifest"));
    }

    // The value at `keys`, e.g. {"batch", "min"}: a number, true/false, or a string's characters.
    std::optional<std::string> value(std::initializer_list<const char*> keys) const {
        const size_t at = find(keys);
        if (at == std::string::npos) {
            return std::nullopt;
        }
        if (text_[at] == '"') {
            return text_.substr(at + 1, text_.find('"', at + 1) - at - 1);
        }
        return text_.substr(at, text_.find_first_of(",}] \t\r\n", at) - at);
    }

    std::string required(std::initializer_list<const char*> keys) const {
        if (auto found = value(keys)) {
            return *found;
        }
        throw std::runtime_error(path_ + " has no " + name(keys) + "; is it a densenet-trt engine manifest?");
    }

    // The array of numbers at `keys`, e.g. {"preprocessing", "mean"}.
    std::vector<double> numbers(std::initializer_list<const char*> keys) const {
        const size_t at = find(keys);
        const size_t end = at == std::string::npos ? at : text_.find(']', at);
        if (end == std::string::npos || text_[at] != '[') {
            throw std::runtime_error(path_ + " has no list " + name(keys) + "; is it a densenet-trt engine manifest?");
        }
        std::vector<double> values;
        std::istringstream items(text_.substr(at + 1, end - at - 1));
        std::string item;
        while (std::getline(items, item, ',')) {
            try {
                values.push_back(std::stod(item));
            } catch (const std::exception&) {
                throw std::runtime_error(path_ + ": " + name(keys) + " holds " + item + ", not a number");
            }
        }
        return values;
    }

    int64_t integer(std::initializer_list<const char*> keys) const {
        const std::string text = required(keys);
        try {
            return std::stoll(text);
        } catch (const std::exception&) {
            throw std::runtime_error(path_ + ": " + text + " is not an integer");
        }
    }

    // A count such as "threads": 0 where the manifest records none (null).
    int64_t optional_integer(std::initializer_list<const char*> keys) const {
        const auto found = value(keys);
        return !found || *found == "null" ? 0 : integer(keys);
    }

    // (batch min..max, channels, size, size)
    ShapeRange input_range() const {
        const int64_t channels = integer({"in_channels"});
        const int64_t size = integer({"image_size"});
        return {{integer({"batch", "min"}), channels, size, size}, {integer({"batch", "max"}), channels, size, size}};
    }

private:
    Manifest(std::string path, std::string text) : path_(std::move(path)), text_(std::move(text)) {}

    static std::string name(std::initializer_list<const char*> keys) {
        std::string text;
        for (const char* key : keys) {
            text += text.empty() ? key : std::string(".") + key;
        }
        return text;
    }

    // Where the value at `keys` starts, or npos.
    size_t find(std::initializer_list<const char*> keys) const {
        size_t at = text_.find('{');
        for (const char* key : keys) {
            if (at == std::string::npos || text_[at] != '{') {
                return std::string::npos;
            }
            at = member(at, key);
        }
        return at;
    }

    // Where the value of `key` starts, among the members of the object whose '{' is at `object`.
    size_t member(size_t object, const std::string& key) const {
        int depth = 0;
        for (size_t i = object; i < text_.size(); ++i) {
            const char c = text_[i];
            if (c == '"') {
                size_t close = i + 1;
                while (close < text_.size() && text_[close] != '"') {
                    close += text_[close] == '\\' ? 2 : 1;
                }
                const size_t after = text_.find_first_not_of(" \t\r\n", close + 1);
                if (depth == 1 && text_.compare(i + 1, close - i - 1, key) == 0 && after != std::string::npos &&
                    text_[after] == ':') {
                    return text_.find_first_not_of(" \t\r\n", after + 1);
                }
                i = close;
            } else if (c == '{' || c == '[') {
                ++depth;
            } else if ((c == '}' || c == ']') && --depth == 0) {
                break;
            }
        }
        return std::string::npos;
    }

    std::string path_;
    std::string text_;
};

// The engine an ENGINE argument names, with its manifest: a file, with the manifest.json beside
// it, or the engine's folder, whose manifest names its main file. These programs' engines need
// their manifest (the settings the engine was built and verified with).
inline std::pair<std::string, Manifest> engine_with_manifest(const std::string& engine, const std::string& program) {
    const bool folder = std::filesystem::is_directory(engine);
    if (!folder) {
        require_file(engine, "engine");
    }
    auto manifest = folder ? Manifest::in(engine) : Manifest::beside(engine);
    if (!manifest) {
        throw std::runtime_error("no manifest.json " + std::string(folder ? "in " : "beside ") + engine + ": " +
                                 program + " reads the engine's settings from it; keep the engine folder that "
                                 "densenet-trt build wrote together");
    }
    std::string file = engine;
    if (folder) {
        file = (std::filesystem::path(engine) / manifest->required({"main_file"})).string();
        require_file(file, "engine");
    }
    return {file, *manifest};
}

// The usage both CPU runners (infer_onnxruntime, infer_openvino) share: their input and options.
inline const std::string kCpuRunnerUsage =
    "on the CPU and prints the top K classes of each image (default 5) with their softmax\n"
    "probabilities. The images: float32 (N, C, H, W) as the engine takes them, or uint8\n"
    "(N, H, W, C) (or (N, H, W) for one channel) resized and center-cropped as the manifest's\n"
    "preprocessing says, which are scaled and normalized with its mean and std here.\n"
    "\n"
    "  --output LOGITS.npy  also write the logits (N, classes) as float32 .npy\n"
    "  --top-k K            how many classes to print per image\n"
    "\n";

// The input of a program that reads the engine's manifest: float32 images (N, C, H, W) as the
// engine takes them, or uint8 images (N, H, W, C), (N, H, W) for one channel, already resized and
// center-cropped as the manifest's preprocessing says, which are scaled to [0, 1] and normalized
// with its mean and std here, in float32, as densenet_trt.data.Preprocessing does.
inline npy::Array read_input(const std::string& path, const Manifest& manifest) {
    require_file(path, "input");
    const npy::Raw raw = npy::read_raw(path);
    if (raw.descr != "'|u1'") {
        return read_images(path);
    }
    const std::vector<double> mean = manifest.numbers({"preprocessing", "mean"});
    const std::vector<double> stdev = manifest.numbers({"preprocessing", "std"});
    const auto channels = static_cast<int64_t>(mean.size());
    const int64_t crop = manifest.integer({"preprocessing", "crop"});
    const auto& s = raw.shape;
    const bool fits = s.size() == 4 ? s[3] == channels : s.size() == 3 && channels == 1;
    if (!fits || s[1] != crop || s[2] != crop || stdev.size() != mean.size()) {
        throw std::runtime_error(path + " holds uint8 images of shape " + npy::shape_text(s) + "; this engine takes (N, " +
                                 std::to_string(crop) + ", " + std::to_string(crop) + ", " + std::to_string(channels) +
                                 "): resized and center-cropped as its manifest's preprocessing says");
    }
    const size_t count = npy::checked_count(raw, 1, path);
    const int64_t pixels = crop * crop;
    npy::Array images;
    images.shape = {s[0], channels, crop, crop};
    images.data.resize(count);
    for (size_t i = 0; i < count; ++i) {
        const int64_t c = static_cast<int64_t>(i) % channels;
        const int64_t pixel = static_cast<int64_t>(i) / channels % pixels;
        const int64_t n = static_cast<int64_t>(i) / channels / pixels;
        const float value = static_cast<float>(static_cast<unsigned char>(raw.data[i])) / 255.0f;
        images.data[(n * channels + c) * pixels + pixel] =
            (value - static_cast<float>(mean[c])) / static_cast<float>(stdev[c]);
    }
    return images;
}

// Prints the top-k classes of each sample with their softmax probabilities and writes the
// logits (N, classes) to options.output if given.
inline void report(const Options& options, int64_t batch, int64_t classes, const std::vector<float>& logits) {
    const int64_t k = std::min<int64_t>(options.top_k, classes);
    std::printf("top-%lld classes (softmax probability) per sample:\n", static_cast<long long>(k));
    for (int64_t n = 0; n < batch; ++n) {
        const float* row = logits.data() + n * classes;
        const float largest = *std::max_element(row, row + classes);
        double sum = 0;
        for (int64_t c = 0; c < classes; ++c) {
            sum += std::exp(static_cast<double>(row[c]) - largest);
        }
        std::vector<int64_t> order(classes);
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [row](int64_t a, int64_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
        std::printf("sample %lld:", static_cast<long long>(n));
        for (int64_t i = 0; i < k; ++i) {
            const double p = std::exp(static_cast<double>(row[order[i]]) - largest) / sum;
            std::printf(" %lld (%.6f)", static_cast<long long>(order[i]), p);
        }
        std::printf("\n");
    }
    if (!options.output.empty()) {
        npy::write(options.output, {batch, classes}, logits);
    }
}

}  // namespace example
