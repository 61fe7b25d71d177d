// Reading and writing float32 C-order arrays in NumPy's .npy format (versions 1.0 to 3.0),
// the format np.save writes: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace npy {

struct Array {
    std::vector<int64_t> shape;
    std::vector<float> data;  // C order
};

inline std::string shape_text(const std::vector<int64_t>& shape) {
    std::ostringstream out;
    out << "(";
    for (size_t i = 0; i < shape.size(); ++i) {
        out << (i ? ", " : "") << shape[i];
    }
    out << (shape.size() == 1 ? ",)" : ")");
    return out.str();
}

// The text after `'key':` in a header dictionary such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 32, 32), }
inline std::string header_value(const std::string& header, const std::string& key, const std::string& path) {
    const size_t at = header.find("'" + key + "'");
    const size_t colon = at == std::string::npos ? at : header.find(':', at);
    const size_t begin = colon == std::string::npos ? colon : header.find_first_not_of(' ', colon + 1);
    if (begin == std::string::npos) {
        throw std::runtime_error(path + " has a .npy header without '" + key + "'");
    }
    const char open = header[begin];
    const bool bracketed = open == '(' || open == '\'';
    const size_t end = open == '(' ? header.find(')', begin)
                     : open == '\'' ? header.find('\'', begin + 1)
                     : header.find_first_of(",}", begin);
    if (end == std::string::npos) {
        throw std::runtime_error(path + " has a malformed .npy header: " + header);
    }
    return header.substr(begin, end - begin + (bracketed ? 1 : 0));
}

inline std::vector<int64_t> parse_shape(const std::string& tuple, const std::string& path) {
    std::vector<int64_t> shape;
    std::string inner = tuple.substr(1, tuple.size() - 2);
    std::istringstream items(inner);
    std::string item;
    while (std::getline(items, item, ',')) {
        if (item.find_first_not_of(' ') == std::string::npos) {
            continue;
        }
        try {
            shape.push_back(std::stoll(item));
        } catch (const std::exception&) {
            throw std::runtime_error(path + " has an unreadable shape " + tuple);
        }
    }
    return shape;
}

// A .npy file's array as stored: its dtype descr ('<f4', '|u1', ...), its shape and its data's
// bytes; read_raw throws std::runtime_error naming the file if it cannot be read, is not a .npy
// file or is in Fortran order.
struct Raw {
    std::string descr;
    std::vector<int64_t> shape;
    std::string data;
};

inline std::string read_header(const std::string& path, const std::string& bytes, size_t& data_start) {
    const std::string magic = "\x93NUMPY";
    if (bytes.size() < 10 || bytes.compare(0, magic.size(), magic) != 0) {
        throw std::runtime_error(path + " is not a .npy file (write it with numpy.save)");
    }
    const auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])); };
    const uint32_t major = byte(6);
    const size_t length_size = major == 1 ? 2 : 4;
    if (major < 1 || major > 3 || bytes.size() < 8 + length_size) {
        throw std::runtime_error(path + " is a .npy file of unknown version " + std::to_string(major));
    }
    uint32_t header_length = 0;
    for (size_t i = 0; i < length_size; ++i) {
        header_length |= byte(8 + i) << (8 * i);
    }
    data_start = 8 + length_size + header_length;
    if (bytes.size() < data_start) {
        throw std::runtime_error(path + " is truncated: its header is cut off");
    }
    return bytes.substr(8 + length_size, header_length);
}

inline Raw read_raw(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) {
        throw std::runtime_error(path + " cannot be read");
    }
    const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    size_t data_start = 0;
    const std::string header = read_header(path, bytes, data_start);
    Raw raw;
    raw.descr = header_value(header, "descr", path);
    if (header_value(header, "fortran_order", path) != "False") {
        throw std::runtime_error(path + " is in Fortran order; save numpy.ascontiguousarray(x)");
    }
    raw.shape = parse_shape(header_value(header, "shape", path), path);
    raw.data = bytes.substr(data_start);
    return raw;
}

// The count of elements of `raw`, checked against its data's length at `item_size` bytes each.
inline size_t checked_count(const Raw& raw, size_t item_size, const std::string& path) {
    size_t count = 1;
    for (int64_t d : raw.shape) {
        count *= static_cast<size_t>(d);
    }
    if (raw.data.size() != count * item_size) {
        throw std::runtime_error(path + " holds " + std::to_string(raw.data.size()) + " bytes of data; shape " +
                                 shape_text(raw.shape) + " needs " + std::to_string(count * item_size));
    }
    return count;
}

// A float32 array from `path`: read_raw's errors, and one for any other dtype.
inline Array read(const std::string& path) {
    const Raw raw = read_raw(path);
    if (raw.descr != "'<f4'") {
        throw std::runtime_error(path + " holds dtype " + raw.descr + ", not float32 ('<f4'); save x.astype(numpy.float32)");
    }
    Array array;
    array.shape = raw.shape;
    array.data.resize(checked_count(raw, sizeof(float), path));
    std::memcpy(array.data.data(), raw.data.data(), raw.data.size());
    return array;
}

// Writes a float32 C-order array as a version 1.0 .npy file (header padded to 64 bytes, as numpy does).
inline void write(const std::string& path, const std::vector<int64_t>& shape, const std::vector<float>& data) {
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }";
    const size_t unpadded = 10 + header.size() + 1;
    header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
    std::ofstream file(path, std::ios::binary);
    const char length[2] = {static_cast<char>(header.size() & 0xff), static_cast<char>(header.size() >> 8)};
    file << "\x93NUMPY" << '\x01' << '\x00';
    file.write(length, 2);
    file << header;
    file.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size() * sizeof(float)));
    if (!file) {
        throw std::runtime_error("cannot write " + path);
    }
}

}  // namespace npy
