import LedgerCore
import LedgerStore
import Logging
import NIOCore
import NIOPosix

/// Serves one connection: decodes each line, routes it, and writes the responses in request order.
///
/// Order (CONTRACT §2, "Consistency"): requests take effect in the order they were sent. An append
/// starts once every earlier read of the connection has been answered; a read (`status`, `read`,
/// `case`, `report`, `subscribe`) once every earlier append has been answered, so it sees them
/// (their commit published its snapshot before answering). Consecutive appends start as they
/// arrive, so the appends of one connection can share a commit; consecutive reads run side by side.
/// A response waits until every earlier response of the connection has been written.
/// Backpressure: with `maxPending` requests outstanding it stops reading from the socket.
/// Subscribe: once the responses before it are written, the connection streams stored events from
/// the requested position, reading them from the store in chunks only while the socket is writable,
/// so a slow subscriber costs memory of one chunk and nothing of the writer; one that stays
/// unwritable for `subscriberStallSeconds` is told so and dropped. Later requests are ignored.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A response slot, in request order.
    private enum Slot {
        case waiting
        case ready(ByteBuffer)
        case subscribe(from: UInt64?)
    }

    private struct Subscription {
        var next: UInt64
        var fetching = false
    }

    private let context: ServerContext
    private let canAppend: Bool
    private let maxPending: Int
    private var pending = CircularBuffer<Slot>()
    /// Requests decoded but not started yet, in order, with their slot's number.
    private var waiting = CircularBuffer<(seq: Int, request: Request)>()
    private var appendsInFlight = 0
    private var readsInFlight = 0
    private var firstSeq = 0
    private var readHeld = false
    private var closingWhenIdle = false
    private var subscription: Subscription?
    private var stallTimer: Scheduled<Void>?
    /// A subscriber dropped for reading too slowly; its connection is closing.
    private var dropped = false
    private let listenerID = ListenerID()

    init(context: ServerContext, canAppend: Bool) {
        self.context = context
        self.canAppend = canAppend
        self.maxPending = context.configuration.maxPendingPerConnection
    }

    func channelRead(context ctx: ChannelHandlerContext, data: NIOAny) {
        if subscription != nil || dropped { return }  // a subscriber's further lines are ignored
        let frame = unwrapInboundIn(data)
        let seq = firstSeq + pending.count
        pending.append(.waiting)
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
            waiting.append((seq, request))
            startWaiting(ctx)
        }
    }

    /// Starts the waiting requests that the order allows (see the type's comment).
    private func startWaiting(_ ctx: ChannelHandlerContext) {
        while let (seq, request) = waiting.first {
            if case .append = request {
                guard readsInFlight == 0 else { return }
                appendsInFlight += 1
            } else {
                guard appendsInFlight == 0 else { return }
                readsInFlight += 1
            }
            waiting.removeFirst()
            handle(request, seq: seq, ctx)
        }
    }

    private func handle(_ request: Request, seq: Int, _ ctx: ChannelHandlerContext) {
        let server = self.context
        switch request {
        case .append(let events):
            guard canAppend else {
                server.metrics.rejected(.forbidden)
                finished(append: true, ctx)
                complete(seq, Response.error(LedgerError(.forbidden, "this user may only read; appends need a user or group listed in append_users or append_groups")), ctx)
                return
            }
            // The writer only hands the results over; the response is written on the event loop.
            let promise = ctx.eventLoop.makePromise(of: Result<[AppendResult], LedgerError>.self)
            server.writer.submit(events) { promise.succeed($0) }
            let response = promise.futureResult.map { result in
                switch result {
                case .success(let results):
                    return Response.appended(results)
                case .failure(let e):
                    server.metrics.rejected(e.code)
                    return Response.error(e)
                }
            }
            respond(when: response, seq: seq, append: true, ctx)
        case .status:
            // From the published snapshot, on the event loop: no read transaction, no wait.
            finished(append: false, ctx)
            complete(seq, server.status(), ctx)
        case .read(let from, let limit):
            let future = server.readPool.runIfActive(eventLoop: ctx.eventLoop) {
                Response.events(try server.ledger.read(from: from, limit: limit))
            }
            respond(when: future, seq: seq, append: false, ctx)
        case .caseState(let caseID):
            let future = server.readPool.runIfActive(eventLoop: ctx.eventLoop) {
                let history = try server.ledger.caseHistory(caseID)
                return Response.caseHistory(state: history.state, events: history.events)
            }
            respond(when: future, seq: seq, append: false, ctx)
        case .report(let asOf):
            let future = server.readPool.runIfActive(eventLoop: ctx.eventLoop) {
                Response.ok(JSONObject([("report", .object(try server.ledger.report(asOf: asOf).json))]))
            }
            respond(when: future, seq: seq, append: false, ctx)
        case .subscribe(let from):
            finished(append: false, ctx)
            pending[offset: seq - firstSeq] = .subscribe(from: from)
            flushInOrder(ctx)
        }
    }

    /// An append or a read of this connection has its answer: later requests may start.
    private func finished(append: Bool, _ ctx: ChannelHandlerContext) {
        if append { appendsInFlight -= 1 } else { readsInFlight -= 1 }
        startWaiting(ctx)
    }

    private func respond(when future: EventLoopFuture<[UInt8]>, seq: Int, append: Bool, _ ctx: ChannelHandlerContext) {
        future.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let bytes):
                self.complete(seq, bytes, ctx)
            case .failure(let error):
                let e = (error as? StoreError)?.ledgerError
                    ?? LedgerError(.unavailable, "the request failed: \(error); retry later")
                self.complete(seq, Response.error(e), ctx)
            }
            self.finished(append: append, ctx)
        }
    }

    /// Records response `seq` and writes every response that is now next in order.
    private func complete(_ seq: Int, _ bytes: [UInt8], _ ctx: ChannelHandlerContext) {
        guard subscription == nil, seq >= firstSeq else { return }
        pending[offset: seq - firstSeq] = .ready(ctx.channel.allocator.buffer(bytes: bytes))
        flushInOrder(ctx)
    }

    private func flushInOrder(_ ctx: ChannelHandlerContext) {
        var wrote = false
        loop: while let first = pending.first {
            switch first {
            case .waiting:
                break loop
            case .ready(let buffer):
                pending.removeFirst()
                firstSeq += 1
                ctx.write(wrapOutboundOut(buffer), promise: nil)
                wrote = true
            case .subscribe(let from):
                if wrote { ctx.flush() }
                pending.removeAll()
                waiting.removeAll()
                startSubscription(from: from, ctx)
                return
            }
        }
        if wrote { ctx.flush() }
        resumeReadingIfHeld(ctx)
        if closingWhenIdle && pending.isEmpty { ctx.close(promise: nil) }
    }

    /// Reads only while fewer than `maxPending` answers are outstanding and the socket takes our
    /// writes: a client that sends without reading its answers is simply not read from any more.
    func read(context ctx: ChannelHandlerContext) {
        if closingWhenIdle { return }
        if pending.count >= maxPending || !ctx.channel.isWritable {
            readHeld = true
            return
        }
        ctx.read()
    }

    private func resumeReadingIfHeld(_ ctx: ChannelHandlerContext) {
        if readHeld && pending.count < maxPending && ctx.channel.isWritable {
            readHeld = false
            ctx.read()
        }
    }

    func channelActive(context ctx: ChannelHandlerContext) {
        self.context.metrics.connectionOpened()
        ctx.fireChannelActive()
    }

    func channelInactive(context ctx: ChannelHandlerContext) {
        self.context.metrics.connectionClosed()
        if subscription != nil {
            self.context.commits.removeListener(listenerID)
            self.context.metrics.subscriberEnded()
        }
        stallTimer?.cancel()
        ctx.fireChannelInactive()
    }

    // MARK: Subscribe

    private func startSubscription(from: UInt64?, _ ctx: ChannelHandlerContext) {
        // "New events only" starts after the committed head as the store has it.
        let head = context.ledger.head.position
        subscription = Subscription(next: max(1, from ?? head + 1))
        context.metrics.subscriberAdded()
        let bound = NIOLoopBound((self, ctx), eventLoop: ctx.eventLoop)
        let loop = ctx.eventLoop
        context.commits.addListener(listenerID) { _ in
            loop.execute { bound.value.0.pump(bound.value.1) }
        }
        pump(ctx)
    }

    /// Sends the next chunk of stored events if the subscriber is behind and its socket writable.
    private func pump(_ ctx: ChannelHandlerContext) {
        guard var sub = subscription, !sub.fetching, ctx.channel.isActive, ctx.channel.isWritable else { return }
        guard sub.next <= context.commits.position else { return }
        sub.fetching = true
        subscription = sub
        let ledger = context.ledger
        let from = sub.next
        let future = context.readPool.runIfActive(eventLoop: ctx.eventLoop) { try ledger.read(from: from, limit: 256) }
        future.assumeIsolated().whenComplete { result in
            guard var s = self.subscription else { return }
            s.fetching = false
            switch result {
            case .success(let events):
                for e in events { ctx.write(self.wrapOutboundOut(ctx.channel.allocator.buffer(bytes: Response.subscribed(e))), promise: nil) }
                if let last = events.last { s.next = last.position + 1 }
                self.subscription = s
                ctx.flush()
                self.pump(ctx)
            case .failure(let error):
                self.subscription = s
                let e = LedgerError(.unavailable, "the subscription failed reading the log: \(error); subscribe again from position \(s.next)")
                ctx.writeAndFlush(self.wrapOutboundOut(ctx.channel.allocator.buffer(bytes: Response.error(e))), promise: nil)
                ctx.close(promise: nil)
            }
        }
    }

    /// Ends a stalled subscription: nothing more is read from the log for it, the message is queued
    /// behind what its socket still holds, and the connection closes once that is written or after
    /// 30 more seconds.
    private func dropSubscriber(stalledFor seconds: Int, next: UInt64, _ ctx: ChannelHandlerContext) {
        guard subscription != nil else { return }
        subscription = nil
        dropped = true
        closingWhenIdle = true
        context.commits.removeListener(listenerID)
        context.metrics.subscriberEnded()
        context.metrics.subscriberDropped()
        context.logger.notice("dropping a slow subscriber", metadata: ["next": "\(next)"])
        let e = LedgerError(.unavailable, "this subscriber read nothing for \(seconds) s and is dropped; subscribe again from position \(next)")
        let deadline = ctx.eventLoop.assumeIsolated().scheduleTask(in: .seconds(30)) { ctx.close(promise: nil) }
        ctx.writeAndFlush(wrapOutboundOut(ctx.channel.allocator.buffer(bytes: Response.error(e)))).assumeIsolated().whenComplete { _ in
            deadline.cancel()
            ctx.close(promise: nil)
        }
    }

    func channelWritabilityChanged(context ctx: ChannelHandlerContext) {
        if ctx.channel.isWritable {
            stallTimer?.cancel()
            stallTimer = nil
            resumeReadingIfHeld(ctx)
            pump(ctx)
        } else if let sub = subscription, stallTimer == nil {
            let seconds = context.configuration.subscriberStallSeconds
            let next = sub.next
            stallTimer = ctx.eventLoop.assumeIsolated().scheduleTask(in: .seconds(Int64(seconds))) {
                self.dropSubscriber(stalledFor: seconds, next: self.subscription?.next ?? next, ctx)
            }
        }
        ctx.fireChannelWritabilityChanged()
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

/// Identifies one connection's commit listener.
final class ListenerID: Sendable {}
