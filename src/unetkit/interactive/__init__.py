"""Click-guided segmentation: clicks and the field's clicker (clicks), the click model at work
(predictor), training it as a task of the loop (training), and the clicks-to-IoU protocol (evaluate)."""
