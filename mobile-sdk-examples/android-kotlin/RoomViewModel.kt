// A Roost room screen's state for Android, with the HiveMQ MQTT client
// (com.hivemq:hivemq-mqtt-client) and OkHttp + org.json for the HTTP API. Same behaviour as the
// tested python-bot: MQTT 5, username = user, password = access token, stamped envelopes, and
// gap recovery by `seq` from history after every (re)connect (PROTOCOL.md, sections 2 and 8).
// Files are uploaded over HTTP first, then attached to a message by id (section 11).
package dev.roost.example

import androidx.lifecycle.ViewModel
import androidx.lifecycle.viewModelScope
import com.hivemq.client.mqtt.datatypes.MqttQos
import com.hivemq.client.mqtt.mqtt5.Mqtt5AsyncClient
import com.hivemq.client.mqtt.mqtt5.Mqtt5Client
import com.hivemq.client.mqtt.mqtt5.exceptions.Mqtt5DisconnectException
import com.hivemq.client.mqtt.mqtt5.lifecycle.Mqtt5ClientDisconnectedContext
import com.hivemq.client.mqtt.mqtt5.message.disconnect.Mqtt5DisconnectReasonCode
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import okhttp3.MediaType.Companion.toMediaType
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.RequestBody.Companion.toRequestBody
import org.json.JSONArray
import org.json.JSONObject
import java.io.IOException
import java.net.URLEncoder
import java.util.UUID

/** An upload as a message carries it, expanded by the server from its record of the upload. */
data class Attachment(
    val media: String,
    val contentType: String,
    val size: Long,
    val filename: String,
    val width: Int? = null,
    val height: Int? = null,
)

data class Message(
    val seq: Long,
    val from: String,
    val body: String,
    val ts: Long,
    val attachments: List<Attachment> = emptyList(),
)

/** The answer of POST /v1/rooms/{room}/media; `url` (a path) works without a bearer header for an hour. */
data class Upload(val id: String, val url: String, val contentType: String, val size: Long, val filename: String)

/** An upload the server refused: 413 payload_too_large / quota_exceeded, 415 unsupported_media_type, 403/404. */
class UploadRefused(val status: Int, val code: String?, message: String) : IOException("upload refused: $status $code: $message")

/** Access and refresh tokens from POST /v1/auth/login; refreshed before the access token expires. */
class Tokens(private val http: OkHttpClient, private val baseUrl: String, var access: String, private var refresh: String) {
    /** POST /v1/auth/refresh: refresh tokens rotate, so both are replaced. */
    fun refresh() {
        val body = JSONObject().put("refresh_token", refresh).toString().toRequestBody(JSON)
        http.newCall(Request.Builder().url("$baseUrl/v1/auth/refresh").post(body).build()).execute().use { response ->
            check(response.isSuccessful) { "refresh failed: ${response.code}" }
            val pair = JSONObject(response.body!!.string())
            access = pair.getString("access_token")
            refresh = pair.getString("refresh_token")
        }
    }
}

class RoomViewModel(
    private val user: String,
    private val room: String,
    private val tokens: Tokens,
    private val baseUrl: String,
    mqttHost: String,
    mqttPort: Int,
    deviceId: String,
    private val http: OkHttpClient = OkHttpClient(),
) : ViewModel() {
    private val topic = "rooms/$room/messages"
    private val shown = sortedMapOf<Long, Message>()
    private val _messages = MutableStateFlow<List<Message>>(emptyList())
    val messages: StateFlow<List<Message>> = _messages
    private val _uploadError = MutableStateFlow<String?>(null)
    val uploadError: StateFlow<String?> = _uploadError

    private val client: Mqtt5AsyncClient = Mqtt5Client.builder()
        .identifier(deviceId) // one stable id per device: it names the device in presence
        .serverHost(mqttHost)
        .serverPort(mqttPort)
        .automaticReconnectWithDefaultConfig()
        // every (re)connect presents the current access token, refreshed when the server said it expired
        .simpleAuth().username(user).password(tokens.access.toByteArray()).applySimpleAuth()
        .addDisconnectedListener { generic ->
            val context = generic as Mqtt5ClientDisconnectedContext
            val reason = (context.cause as? Mqtt5DisconnectException)?.mqttMessage?.reasonCode
            if (reason == Mqtt5DisconnectReasonCode.MAXIMUM_CONNECT_TIME) tokens.refresh() // 0xA0: token expired
            context.reconnector.connectWith().simpleAuth()
                .username(user).password(tokens.access.toByteArray()).applySimpleAuth().applyConnect()
        }
        .addConnectedListener { subscribeAndRecover() }
        .buildAsync()

    fun start() {
        client.connectWith().cleanStart(false).sessionExpiryInterval(3600).send()
    }

    fun send(body: String, attachments: List<String> = emptyList()) {
        // the client's id makes a re-send after a reconnect idempotent
        val payload = JSONObject().put("id", UUID.randomUUID().toString()).put("body", body)
        if (attachments.isNotEmpty()) {
            payload.put("attachments", JSONArray(attachments.map { JSONObject().put("media", it) }))
        }
        client.publishWith().topic(topic).qos(MqttQos.AT_LEAST_ONCE).payload(payload.toString().toByteArray()).send()
    }

    /**
     * POST /v1/rooms/{room}/media?filename=…: the raw bytes with their Content-Type and the bearer
     * header. The server sniffs the bytes: a type outside the declared family is refused (415);
     * "application/octet-stream" lets the bytes decide. From a picker:
     * `contentResolver.openInputStream(uri)!!.readBytes()` and `contentResolver.getType(uri)`.
     */
    suspend fun upload(bytes: ByteArray, filename: String, contentType: String): Upload = withContext(Dispatchers.IO) {
        val request = Request.Builder()
            .url("$baseUrl/v1/rooms/$room/media?filename=${URLEncoder.encode(filename, "UTF-8")}")
            .header("Authorization", "Bearer ${tokens.access}")
            .post(bytes.toRequestBody(contentType.toMediaType()))
            .build()
        http.newCall(request).execute().use { response ->
            val text = response.body!!.string()
            if (response.code != 201) {
                // {"error":{"code":…,"message":…}}
                val error = runCatching { JSONObject(text).getJSONObject("error") }.getOrNull()
                throw UploadRefused(response.code, error?.optString("code"), error?.optString("message").orEmpty())
            }
            val json = JSONObject(text)
            Upload(json.getString("id"), json.getString("url"), json.getString("content_type"),
                json.getLong("size"), json.getString("filename"))
        }
    }

    /** Uploads a file and sends a message attaching it (`{"body","attachments":[{"media":id}]}`). */
    fun sendFile(bytes: ByteArray, filename: String, contentType: String, body: String = filename) {
        viewModelScope.launch {
            try {
                send(body, listOf(upload(bytes, filename, contentType).id))
            } catch (failed: IOException) { // UploadRefused, or no network
                _uploadError.value = failed.message
            }
        }
    }

    /** A request for an attachment's bytes (GET /v1/media/{id}, `Range` supported), for an image loader. */
    fun download(attachment: Attachment): Request = Request.Builder()
        .url("$baseUrl/v1/media/${attachment.media}")
        .header("Authorization", "Bearer ${tokens.access}")
        .build()

    private fun subscribeAndRecover() {
        client.subscribeWith().topicFilter(topic).qos(MqttQos.AT_LEAST_ONCE)
            .callback { publish -> show(envelope(JSONObject(String(publish.payloadAsBytes)))) }
            .send()
            .thenAccept { viewModelScope.launch { recoverGap() } }
    }

    /** GET /v1/rooms/{room}/messages?after=<highest seq shown>, page by page, oldest first. */
    private suspend fun recoverGap() = withContext(Dispatchers.IO) {
        while (true) {
            val after = synchronized(shown) { if (shown.isEmpty()) 0L else shown.lastKey() }
            val request = Request.Builder()
                .url("$baseUrl/v1/rooms/$room/messages?after=$after&limit=500")
                .header("Authorization", "Bearer ${tokens.access}")
                .build()
            val page = http.newCall(request).execute().use { JSONObject(it.body!!.string()).getJSONArray("messages") }
            for (i in 0 until page.length()) show(envelope(page.getJSONObject(i)))
            if (page.length() < 500) break
        }
    }

    private fun envelope(json: JSONObject): Message {
        val attachments = json.optJSONArray("attachments") ?: JSONArray()
        return Message(
            json.getLong("seq"), json.getString("from"), json.getString("body"), json.getLong("ts"),
            (0 until attachments.length()).map { i ->
                val a = attachments.getJSONObject(i)
                Attachment(
                    a.getString("media"), a.getString("content_type"), a.getLong("size"), a.getString("filename"),
                    if (a.has("width")) a.getInt("width") else null, if (a.has("height")) a.getInt("height") else null,
                )
            },
        )
    }

    /** Live and recovered messages merge by `seq`: each is shown once, in order. */
    private fun show(message: Message) {
        synchronized(shown) {
            shown[message.seq] = message
            _messages.value = shown.values.toList()
        }
    }

    override fun onCleared() {
        client.disconnect()
    }
}

private val JSON = "application/json".toMediaType()
