import VecStoreIO

/// A metadata filter. A field condition matches a document when the field holds a matching value, or,
/// for an array field, when any element matches. Filters are answered from the `fields` index, not by
/// reading documents.
public indirect enum Filter: Sendable, Equatable {
    /// A condition on one metadata field.
    case field(String, Condition)
    /// All filters match (an empty list matches everything).
    case and([Filter])
    /// At least one filter matches (an empty list matches nothing).
    case or([Filter])
    /// The filter does not match (documents without the field included).
    case not(Filter)

    /// A condition on a field's value.
    public enum Condition: Sendable, Equatable {
        /// Equal to a string, number or boolean.
        case equals(JSONValue)
        /// Not equal (documents without the field match too).
        case notEquals(JSONValue)
        /// Equal to one of the values.
        case `in`([JSONValue])
        /// Equal to none of the values (documents without the field match too).
        case notIn([JSONValue])
        /// A number greater than the bound.
        case greaterThan(Double)
        /// A number greater than or equal to the bound.
        case greaterThanOrEqual(Double)
        /// A number less than the bound.
        case lessThan(Double)
        /// A number less than or equal to the bound.
        case lessThanOrEqual(Double)
        /// The field is present.
        case exists
    }

    /// Parses the JSON filter language used by the CLI (Chroma/MongoDB style):
    /// `{"source": "linux"}`, `{"year": {"$gt": 2020, "$lte": 2024}}`, `{"tag": {"$in": ["a", "b"]}}`,
    /// `{"$and": [...]}`, `{"$or": [...]}`, `{"$not": {...}}`, `{"field": {"$exists": true}}`.
    /// Several keys in one object are joined with AND.
    public init(json: String) throws(VecStoreError) {
        let value: JSONValue
        do { value = try JSONValue.parse(json) } catch { throw .invalidFilter("\(error)") }
        self = try Filter.parse(value)
    }

    static func parse(_ value: JSONValue) throws(VecStoreError) -> Filter {
        guard case .object(let object) = value else { throw .invalidFilter("a filter must be a JSON object") }
        var parts: [Filter] = []
        for (key, item) in object.sorted(by: { $0.key < $1.key }) {
            switch key {
            case "$and", "$or":
                guard case .array(let items) = item else { throw .invalidFilter("\(key) takes an array of filters") }
                var subs: [Filter] = []
                for i in items { subs.append(try parse(i)) }
                parts.append(key == "$and" ? .and(subs) : .or(subs))
            case "$not":
                parts.append(.not(try parse(item)))
            default:
                if key.hasPrefix("$") { throw .invalidFilter("unknown operator \(key)") }
                if key.isEmpty { throw .invalidFilter("empty field name") }
                parts.append(contentsOf: try parseField(key, item))
            }
        }
        return parts.count == 1 ? parts[0] : .and(parts)
    }

    private static func scalar(_ v: JSONValue, _ context: String) throws(VecStoreError) -> JSONValue {
        switch v {
        case .string, .number, .bool: return v
        default: throw .invalidFilter("\(context) must be a string, number or boolean")
        }
    }

    private static func number(_ v: JSONValue, _ context: String) throws(VecStoreError) -> Double {
        guard case .number(let x) = v else { throw .invalidFilter("\(context) needs a number") }
        return x
    }

    private static func parseField(_ name: String, _ spec: JSONValue) throws(VecStoreError) -> [Filter] {
        guard case .object(let ops) = spec else {
            return [.field(name, .equals(try scalar(spec, "value of \(name)")))]
        }
        var result: [Filter] = []
        for (op, arg) in ops.sorted(by: { $0.key < $1.key }) {
            let context = "\(name).\(op)"
            let condition: Condition
            switch op {
            case "$eq": condition = .equals(try scalar(arg, context))
            case "$ne": condition = .notEquals(try scalar(arg, context))
            case "$in", "$nin":
                guard case .array(let items) = arg else { throw .invalidFilter("\(context) takes an array") }
                var values: [JSONValue] = []
                for i in items { values.append(try scalar(i, context)) }
                condition = op == "$in" ? .in(values) : .notIn(values)
            case "$gt": condition = .greaterThan(try number(arg, context))
            case "$gte": condition = .greaterThanOrEqual(try number(arg, context))
            case "$lt": condition = .lessThan(try number(arg, context))
            case "$lte": condition = .lessThanOrEqual(try number(arg, context))
            case "$exists":
                guard case .bool(let present) = arg else { throw .invalidFilter("\(context) takes true or false") }
                result.append(present ? .field(name, .exists) : .not(.field(name, .exists)))
                continue
            default: throw .invalidFilter("unknown operator \(op) on field \(name)")
            }
            result.append(.field(name, condition))
        }
        if result.isEmpty { throw .invalidFilter("no condition given for field \(name)") }
        return result
    }
}

extension Filter {
    /// Fields every match of the filter holds with one and the same value: a field's `$eq` (or a
    /// one-value `$in`), directly or as a term of an `$and`. A graph with filter links on such a field
    /// searches through them (Spec/HNSW.md §7.4).
    var pinnedFields: [String] {
        switch self {
        case .field(let name, .equals(let v)):
            if case .array = v { return [] }
            return [name]
        case .field(let name, .in(let values)) where values.count == 1:
            if case .array = values[0] { return [] }
            return [name]
        case .and(let terms): return terms.flatMap(\.pinnedFields)
        default: return []
        }
    }
}
