import LedgerCore
import LedgerStore
import Logging
import NIOCore
import NIOPosix

/// Serves one connection: decodes each line, routes it, and writes the responses in request order.
///
/// Pipelining: requests are started as they arrive, so many appends of one connection can share a
/// commit; a response waits until every earlier response of the connection has been written.
/// Backpressure: with `maxPending` responses outstanding it stops reading from the socket.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let context: ServerContext
    private let canAppend: Bool
    private let maxPending: Int
    /// Responses in request order; nil while a request is still in progress.
    private var pending = CircularBuffer<ByteBuffer?>()
    private var firstSeq = 0
    private var readHeld = false
    private var closingWhenIdle = false

    init(context: ServerContext, canAppend: Bool) {
        self.context = context
        self.canAppend = canAppend
        self.maxPending = context.configuration.maxPendingPerConnection
    }

    func channelRead(context ctx: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let seq = firstSeq + pending.count
        pending.append(nil)
        switch frame {
        case .tooLarge:
            self.context.metrics.rejected(.tooLarge)
            complete(seq, Response.error(LedgerError(.tooLarge, "the line is over \(self.context.configuration.maxLineBytes) bytes; it was discarded; send smaller requests")), ctx)
        case .line(let line):
            if line.readableBytes == 0 {
                pending.removeLast()  // blank lines are ignored
                return
            }
            let request: Request
            do {
                request = try line.withUnsafeReadableBytes { buf throws(LedgerError) in try Request.decode(buf) }
            } catch {
                self.context.metrics.rejected(error.code)
                complete(seq, Response.error(error), ctx)
                return
            }
            handle(request, seq: seq, ctx)
        }
    }

    private func handle(_ request: Request, seq: Int, _ ctx: ChannelHandlerContext) {
        let server = self.context
        switch request {
        case .append(let events):
            guard canAppend else {
                server.metrics.rejected(.forbidden)
                complete(seq, Response.error(LedgerError(.forbidden, "this user may only read; appends need a user or group listed in append_users or append_groups")), ctx)
                return
            }
            let promise = ctx.eventLoop.makePromise(of: [UInt8].self)
            server.writer.submit(events) { result in
                switch result {
                case .success(let results):
                    promise.succeed(Response.appended(results))
                case .failure(let e):
                    server.metrics.rejected(e.code)
                    promise.succeed(Response.error(e))
                }
            }
            respond(when: promise.futureResult, seq: seq, ctx)
        case .status:
            let future = server.readPool.runIfActive(eventLoop: ctx.eventLoop) { try server.status() }
            respond(when: future, seq: seq, ctx)
        case .read(let from, let limit):
            let future = server.readPool.runIfActive(eventLoop: ctx.eventLoop) {
                Response.events(try server.ledger.read(from: from, limit: limit))
            }
            respond(when: future, seq: seq, ctx)
        case .caseState(let caseID):
            let future = server.readPool.runIfActive(eventLoop: ctx.eventLoop) {
                let (state, events) = try server.ledger.caseHistory(caseID)
                return Response.caseHistory(state: state, events: events)
            }
            respond(when: future, seq: seq, ctx)
        case .report(let asOf):
            let future = server.readPool.runIfActive(eventLoop: ctx.eventLoop) {
                Response.ok(JSONObject([("report", .object(try server.ledger.report(asOf: asOf)))]))
            }
            respond(when: future, seq: seq, ctx)
        case .subscribe:
            complete(seq, Response.error(LedgerError(.unknownOp, "subscribe is not served by this version of ledgerd yet")), ctx)
        }
    }

    private func respond(when future: EventLoopFuture<[UInt8]>, seq: Int, _ ctx: ChannelHandlerContext) {
        future.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let bytes):
                self.complete(seq, bytes, ctx)
            case .failure(let error):
                self.complete(seq, Response.error(LedgerError(.unavailable, "the request failed: \(error); retry later")), ctx)
            }
        }
    }

    /// Records response `seq` and writes every response that is now next in order.
    private func complete(_ seq: Int, _ bytes: [UInt8], _ ctx: ChannelHandlerContext) {
        pending[offset: seq - firstSeq] = ctx.channel.allocator.buffer(bytes: bytes)
        var wrote = false
        while let first = pending.first, let buffer = first {
            pending.removeFirst()
            firstSeq += 1
            ctx.write(wrapOutboundOut(buffer), promise: nil)
            wrote = true
        }
        if wrote { ctx.flush() }
        if readHeld && pending.count < maxPending {
            readHeld = false
            ctx.read()
        }
        if closingWhenIdle && pending.isEmpty { ctx.close(promise: nil) }
    }

    func read(context ctx: ChannelHandlerContext) {
        if closingWhenIdle { return }
        if pending.count >= maxPending {
            readHeld = true
            return
        }
        ctx.read()
    }

    func channelActive(context ctx: ChannelHandlerContext) {
        self.context.metrics.connectionOpened()
        ctx.fireChannelActive()
    }

    func channelInactive(context ctx: ChannelHandlerContext) {
        self.context.metrics.connectionClosed()
        ctx.fireChannelInactive()
    }

    func userInboundEventTriggered(context ctx: ChannelHandlerContext, event: Any) {
        // Shutdown, or the client closed its side (`echo … | socat`): answer what was asked, then close.
        if event is CloseWhenIdle || (event as? ChannelEvent) == .inputClosed {
            closingWhenIdle = true
            if pending.isEmpty { ctx.close(promise: nil) }
            return
        }
        ctx.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context ctx: ChannelHandlerContext, error: any Error) {
        self.context.logger.debug("connection error", metadata: ["error": "\(error)"])
        ctx.close(promise: nil)
    }
}

/// Asks a connection to stop reading and close once its outstanding responses are written.
struct CloseWhenIdle: Sendable {}
