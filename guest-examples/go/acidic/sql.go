package acidic

import (
	"encoding/json"
	"reflect"
	"unicode/utf8"
)

// `value` discriminants, in WIT order.
const (
	tagNull uint8 = iota
	tagInteger
	tagReal
	tagText
	tagBlob
	tagJSON
)

type sqlValue struct {
	tag uint8
	i   int64
	f   float64
	s   string
	b   []byte
}

// sqlValueOf maps a Go parameter to a SQL value.
func sqlValueOf(p any) (sqlValue, error) {
	switch v := p.(type) {
	case nil:
		return sqlValue{tag: tagNull}, nil
	case bool:
		if v {
			return sqlValue{tag: tagInteger, i: 1}, nil
		}
		return sqlValue{tag: tagInteger}, nil
	case string:
		if !utf8.ValidString(v) {
			return sqlValue{}, Fatal("sql parameter: text is not valid UTF-8; bind it as []byte")
		}
		return sqlValue{tag: tagText, s: v}, nil
	case []byte:
		return sqlValue{tag: tagBlob, b: v}, nil
	case RawJSON:
		return sqlValue{tag: tagJSON, s: string(v)}, nil
	}
	return reflectedValue(p)
}

// reflectedValue binds pointers (nil is NULL) and named types by their kind;
// anything else (structs, maps, slices) as JSON.
func reflectedValue(p any) (sqlValue, error) {
	rv := reflect.ValueOf(p)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return sqlValue{tag: tagNull}, nil
		}
		return sqlValueOf(rv.Elem().Interface())
	case reflect.String:
		return sqlValueOf(rv.String())
	case reflect.Bool:
		return sqlValueOf(rv.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return sqlValue{tag: tagInteger, i: rv.Int()}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return uintValue(rv.Uint())
	case reflect.Float32, reflect.Float64:
		return sqlValue{tag: tagReal, f: rv.Float()}, nil
	case reflect.Slice:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return sqlValue{tag: tagBlob, b: rv.Bytes()}, nil
		}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return sqlValue{}, Fatal("sql parameter %T: %v", p, err)
	}
	return sqlValue{tag: tagJSON, s: string(b)}, nil
}

func uintValue(v uint64) (sqlValue, error) {
	if v > 1<<63-1 {
		return sqlValue{}, Fatal("sql parameter %d does not fit a signed 64-bit integer", v)
	}
	return sqlValue{tag: tagInteger, i: int64(v)}, nil
}
