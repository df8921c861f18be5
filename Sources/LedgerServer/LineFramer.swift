import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// What the framer produces: a complete line (without `\n` and a trailing `\r`), or the news that
/// a line went over the limit (its bytes up to the next newline are discarded).
enum Frame {
    case line(ByteBuffer)
    case tooLarge
}

/// Splits a byte stream into newline-terminated lines of at most `maxLength` bytes.
///
/// Memory per connection stays under `maxLength` plus one read: an over-long line is reported once
/// and then skipped as it arrives, never buffered whole.
struct LineFramer: ByteToMessageDecoder {
    typealias InboundOut = Frame

    let maxLength: Int
    private var discarding = false
    /// Bytes of the buffer already known to hold no newline.
    private var scanned = 0

    init(maxLength: Int) { self.maxLength = maxLength }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let from = scanned
        let found: Int? = buffer.withUnsafeReadableBytes { b in
            guard b.count > from, let base = b.baseAddress else { return nil }
            // memchr: lines of a thousand events are long, and this runs over every byte.
            guard let hit = memchr(base + from, Int32(UInt8(ascii: "\n")), b.count - from) else { return nil }
            return base.distance(to: UnsafeRawPointer(hit))
        }
        if let length = found {
            scanned = 0
            if discarding {
                discarding = false
                buffer.moveReaderIndex(forwardBy: length + 1)
                return .continue
            }
            if length > maxLength {
                buffer.moveReaderIndex(forwardBy: length + 1)
                context.fireChannelRead(wrapInboundOut(.tooLarge))
                return .continue
            }
            var line = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            if line.readableBytes > 0, line.getInteger(at: line.writerIndex - 1, as: UInt8.self) == UInt8(ascii: "\r") {
                line.moveWriterIndex(to: line.writerIndex - 1)
            }
            context.fireChannelRead(wrapInboundOut(.line(line)))
            return .continue
        }
        if discarding {
            buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            scanned = 0
            return .needMoreData
        }
        if buffer.readableBytes > maxLength {
            discarding = true
            buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            scanned = 0
            context.fireChannelRead(wrapInboundOut(.tooLarge))
            return .needMoreData
        }
        scanned = buffer.readableBytes
        return .needMoreData
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // Complete lines are still requests; a last line without its newline is not (a client that
        // dropped half a line must not get it executed).
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        return .needMoreData
    }
}
