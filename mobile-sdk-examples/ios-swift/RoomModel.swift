// A Roost room screen's state for iOS, with CocoaMQTT (MQTT 5 client, CocoaMQTT5) and
// URLSession for the HTTP API. Same behaviour as the tested python-bot and the Kotlin example:
// username = user, password = access token, stamped envelopes, gap recovery by `seq` from history
// after every (re)connect, token refresh on DISCONNECT 0xA0 (PROTOCOL.md, sections 2 and 8).
// Files are uploaded over HTTP first, then attached to a message by id (section 11). Edits, deletes
// and reactions arrive on the same topic and are folded into the message they name (section 4).
import CocoaMQTT
import Foundation

/// An upload as a message carries it, expanded by the server from its record of the upload.
struct Attachment: Codable {
    let media: String
    let content_type: String
    let size: Int64
    let filename: String
    let width: Int?
    let height: Int?
}

/// One key given to a message: how many gave it, `me` when the user is one of them.
struct Reaction: Codable {
    let key: String
    var count: Int
    var me: Bool
}

/// A room envelope: a message (no `type`) as its edits, delete and reactions left it, or one of
/// those events (`type` "edit", "delete" or "reaction", on the message `target`).
struct Message: Codable {
    let seq: Int64
    let from: String
    var body: String
    let ts: Int64
    var attachments: [Attachment]?
    var edited_at: Int64?
    var deleted: Bool? // a tombstone: body and attachments erased
    var deleted_by: String?
    var reactions: [Reaction]?
    let type: String?
    let target: Int64?
    let key: String?
    let on: Bool?
}

/// The answer of POST /v1/rooms/{room}/media; `url` (a path) works without a bearer header for an hour.
struct Upload: Codable {
    let id: String
    let url: String
    let content_type: String
    let size: Int64
    let sha256: String
    let filename: String
    let width: Int?
    let height: Int?
}

/// An upload the server refused: 413 payload_too_large / quota_exceeded, 415 unsupported_media_type, 403/404.
struct UploadRefused: Error {
    let status: Int
    let code: String?
    let message: String?
}

private struct ErrorBody: Codable {
    struct Detail: Codable { let code: String; let message: String }
    let error: Detail
}

private struct Page: Codable { let messages: [Message] }
private struct TokenPair: Codable { let access_token: String; let refresh_token: String }

/// Access and refresh tokens from POST /v1/auth/login.
final class Tokens {
    private(set) var access: String
    private var refresh: String
    private let baseURL: URL

    init(baseURL: URL, access: String, refresh: String) {
        self.baseURL = baseURL
        self.access = access
        self.refresh = refresh
    }

    /// POST /v1/auth/refresh: refresh tokens rotate, so both are replaced.
    func renew() async throws {
        var request = URLRequest(url: baseURL.appendingPathComponent("v1/auth/refresh"))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = try JSONEncoder().encode(["refresh_token": refresh])
        let (data, _) = try await URLSession.shared.data(for: request)
        let pair = try JSONDecoder().decode(TokenPair.self, from: data)
        access = pair.access_token
        refresh = pair.refresh_token
    }
}

@MainActor
final class RoomModel: ObservableObject, CocoaMQTT5Delegate {
    @Published private(set) var messages: [Message] = []
    private var shown: [Int64: Message] = [:] // messages only; events fold into them
    private var lastSeq: Int64 = 0 // the highest seq taken, messages and events: where recovery resumes
    private var held: [Message]? // live envelopes that wait while recovery runs
    private let user: String
    private let room: String
    private let tokens: Tokens
    private let baseURL: URL
    private let mqtt: CocoaMQTT5

    init(user: String, room: String, tokens: Tokens, baseURL: URL, host: String, port: UInt16, deviceId: String) {
        self.user = user
        self.room = room
        self.tokens = tokens
        self.baseURL = baseURL
        // one stable client id per device: it names the device in presence
        mqtt = CocoaMQTT5(clientID: deviceId, host: host, port: port)
        mqtt.username = user
        mqtt.password = tokens.access
        mqtt.cleanSession = false
        let properties = MqttConnectProperties()
        properties.sessionExpiryInterval = 3600
        mqtt.connectProperties = properties
        mqtt.autoReconnect = true
        mqtt.delegate = self
    }

    private var topic: String { "rooms/\(room)/messages" }

    func start() { _ = mqtt.connect() }

    func send(_ body: String, attachments: [String] = []) {
        var message: [String: Any] = ["body": body]
        if !attachments.isEmpty { message["attachments"] = attachments.map { ["media": $0] } }
        publish(message)
    }

    /// Replaces the body of one of the user's messages.
    func edit(_ seq: Int64, body: String) { publish(["type": "edit", "target": seq, "body": body]) }

    /// Deletes a message: the user's own, or any when the user owns the room.
    func delete(_ seq: Int64) { publish(["type": "delete", "target": seq]) }

    /// Gives `key` (an emoji) to a message, or takes it back when the user had given it: each call toggles.
    func react(_ seq: Int64, key: String) { publish(["type": "reaction", "target": seq, "key": key]) }

    private func publish(_ message: [String: Any]) {
        var message = message
        // the client's id makes a re-send after a reconnect idempotent
        message["id"] = UUID().uuidString
        let payload = try! JSONSerialization.data(withJSONObject: message)
        mqtt.publish(CocoaMQTT5Message(topic: topic, payload: [UInt8](payload), qos: .qos1),
                     DUP: false, retained: false, properties: MqttPublishProperties())
    }

    /// POST /v1/rooms/{room}/media?filename=…: the raw bytes with their Content-Type and the bearer
    /// header. The server sniffs the bytes: a type outside the declared family is refused (415);
    /// "application/octet-stream" lets the bytes decide. From PhotosPicker:
    /// `item.loadTransferable(type: Data.self)` and `item.supportedContentTypes.first?.preferredMIMEType`.
    func upload(_ data: Data, filename: String, contentType: String) async throws -> Upload {
        var components = URLComponents(url: baseURL.appendingPathComponent("v1/rooms/\(room)/media"),
                                       resolvingAgainstBaseURL: false)!
        components.queryItems = [URLQueryItem(name: "filename", value: filename)]
        var request = URLRequest(url: components.url!)
        request.httpMethod = "POST"
        request.setValue("Bearer \(tokens.access)", forHTTPHeaderField: "Authorization")
        request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        let (body, response) = try await URLSession.shared.upload(for: request, from: data)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 201 else {
            let error = try? JSONDecoder().decode(ErrorBody.self, from: body)
            throw UploadRefused(status: status, code: error?.error.code, message: error?.error.message)
        }
        return try JSONDecoder().decode(Upload.self, from: body)
    }

    /// Uploads a file and sends a message attaching it (`{"body","attachments":[{"media":id}]}`).
    func sendFile(_ data: Data, filename: String, contentType: String, body: String? = nil) async throws {
        let upload = try await upload(data, filename: filename, contentType: contentType)
        send(body ?? upload.filename, attachments: [upload.id])
    }

    /// A request for an attachment's bytes (GET /v1/media/{id}, `Range` supported).
    func download(_ attachment: Attachment) -> URLRequest {
        var request = URLRequest(url: baseURL.appendingPathComponent("v1/media/\(attachment.media)"))
        request.setValue("Bearer \(tokens.access)", forHTTPHeaderField: "Authorization")
        return request
    }

    /// GET /v1/rooms/{room}/messages?after=<highest seq taken>, page by page, oldest first; then the
    /// live envelopes that came meanwhile (those the pages had are skipped by `seq`).
    private func recoverGap() async {
        var after = lastSeq
        while true {
            var components = URLComponents(url: baseURL.appendingPathComponent("v1/rooms/\(room)/messages"),
                                           resolvingAgainstBaseURL: false)!
            components.queryItems = [URLQueryItem(name: "after", value: String(after)),
                                     URLQueryItem(name: "limit", value: "500")]
            var request = URLRequest(url: components.url!)
            request.setValue("Bearer \(tokens.access)", forHTTPHeaderField: "Authorization")
            guard let (data, _) = try? await URLSession.shared.data(for: request),
                  let page = try? JSONDecoder().decode(Page.self, from: data) else { break }
            for envelope in page.messages { take(envelope, after: after) }
            if page.messages.count < 500 { break }
            after = lastSeq
        }
        let live = held ?? []
        held = nil
        for envelope in live { take(envelope, after: lastSeq) }
    }

    /// Takes one envelope, live or from a page fetched with `after=`, each `seq` once and in order.
    /// A message is shown; an event is folded into the message it targets, never shown: a page's
    /// messages are current as of the page, so its events fold only into messages held before it
    /// (PROTOCOL.md, 4).
    private func take(_ envelope: Message, after: Int64) {
        guard envelope.seq > lastSeq else { return } // a QoS 1 re-delivery, or one a page already had
        lastSeq = envelope.seq
        if envelope.type == nil {
            shown[envelope.seq] = envelope
        } else if let target = envelope.target, target <= after, let message = shown[target] {
            shown[target] = folded(message, by: envelope)
        }
        messages = shown.values.sorted { $0.seq < $1.seq }
    }

    /// `message` as an edit, delete or reaction leaves it.
    private func folded(_ message: Message, by event: Message) -> Message {
        var message = message
        switch event.type {
        case "edit"?:
            message.body = event.body
            message.edited_at = event.ts
        case "delete"?:
            message.body = ""
            message.attachments = nil
            message.reactions = nil
            message.deleted = true
            message.deleted_by = event.from
        case "reaction"?:
            guard let key = event.key, let on = event.on else { break }
            // keys stay in the order first given; one nobody gives any more goes
            var reactions = message.reactions ?? []
            if !reactions.contains(where: { $0.key == key }) { reactions.append(Reaction(key: key, count: 0, me: false)) }
            let i = reactions.firstIndex { $0.key == key }!
            reactions[i].count += on ? 1 : -1
            if event.from == user { reactions[i].me = on }
            message.reactions = reactions.filter { $0.count > 0 }
        default:
            break
        }
        return message
    }

    // MARK: CocoaMQTT5Delegate

    nonisolated func mqtt5(_ mqtt5: CocoaMQTT5, didConnectAck ack: CocoaMQTTCONNACKReasonCode, connAckData: MqttDecodeConnAck?) {
        Task { @MainActor in
            guard ack == .success else { return }
            if held == nil { held = [] }
            mqtt5.subscribe([MqttSubscription(topic: topic, qos: .qos1)])
        }
    }

    nonisolated func mqtt5(_ mqtt5: CocoaMQTT5, didSubscribeTopics success: NSDictionary, failed: [String], subAckData: MqttDecodeSubAck?) {
        Task { @MainActor in await recoverGap() }
    }

    nonisolated func mqtt5(_ mqtt5: CocoaMQTT5, didReceiveMessage message: CocoaMQTT5Message, id: UInt16, publishData: MqttDecodePublish?) {
        guard let envelope = try? JSONDecoder().decode(Message.self, from: Data(message.payload)) else { return }
        Task { @MainActor in
            // while a recovery runs it waits in `held`, else it is taken now
            if held != nil { held?.append(envelope) } else { take(envelope, after: lastSeq) }
        }
    }

    nonisolated func mqtt5(_ mqtt5: CocoaMQTT5, didReceiveDisconnectReasonCode reasonCode: CocoaMQTTDISCONNECTReasonCode) {
        // 0xA0: the access token expired; the next automatic reconnect presents a fresh one
        guard reasonCode == .maximumConnectTime else { return }
        Task { @MainActor in
            try? await tokens.renew()
            mqtt5.password = tokens.access
        }
    }

    nonisolated func mqtt5(_ mqtt5: CocoaMQTT5, didPublishMessage message: CocoaMQTT5Message, id: UInt16) {}
    nonisolated func mqtt5(_ mqtt5: CocoaMQTT5, didPublishAck id: UInt16, pubAckData: MqttDecodePubAck?) {}
    nonisolated func mqtt5(_ mqtt5: CocoaMQTT5, didPublishRec id: UInt16, pubRecData: MqttDecodePubRec?) {}
    nonisolated func mqtt5(_ mqtt5: CocoaMQTT5, didUnsubscribeTopics topics: [String], unsubAckData: MqttDecodeUnsubAck?) {}
    nonisolated func mqtt5(_ mqtt5: CocoaMQTT5, didReceiveAuthReasonCode reasonCode: CocoaMQTTAUTHReasonCode) {}
    nonisolated func mqtt5DidPing(_ mqtt5: CocoaMQTT5) {}
    nonisolated func mqtt5DidReceivePong(_ mqtt5: CocoaMQTT5) {}
    nonisolated func mqtt5DidDisconnect(_ mqtt5: CocoaMQTT5, withError err: Error?) {}
}
